"""Access-token verification + permission check: p50/p99 of TokenService.authenticate().

Each call verifies the JWT (signature check skipped for a token already verified by this
process; expiry and issuer still checked) and does one primary-key lookup of the user and
the revocation list on SQLite, so revocation and disabling take effect at once.
Compares against: Keystone's Fernet token validation (a few ms per call with its cache off).
Run: .venv/bin/python bench/bench_token_verify.py [calls]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from novacron.config import Settings
from novacron.db.base import Database, new_id
from novacron.db.models import Tenant, User
from novacron.identity.passwords import hash_password
from novacron.identity.tokens import TokenService


def pct(samples: list[float], q: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * q))] * 1e6


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    state = Path(tempfile.mkdtemp(prefix="nc-bench-"))
    settings = Settings(state_dir=state, database_url=f"sqlite:///{state}/novacron.db", embedded_agent=False)
    db = Database(settings.database_url)
    db.create_all()
    tokens = TokenService(db, settings)
    with db.session() as s:
        tenant = Tenant(id=new_id("tenant"), name="bench")
        s.add(tenant)
        s.flush()
        users = []
        for i in range(1000):  # a realistic table, not a single row
            u = User(
                id=new_id("user"),
                username=f"u{i}",
                password_hash=hash_password("x") if i == 0 else "-",
                role="member",
                tenant_id=tenant.id,
            )
            s.add(u)
            users.append(u)
        s.flush()
        access = [tokens.issue(s, u)[0] for u in users[:100]]

    def run(label: str, cold: bool) -> None:
        samples: list[float] = []
        for i in range(calls):
            token = access[i % len(access)]
            if cold:
                tokens._verified.clear()  # force the ECDSA signature check every time
            t0 = time.perf_counter()
            principal = tokens.authenticate(token)
            assert principal.can("vm:read")
            samples.append(time.perf_counter() - t0)
        samples.sort()
        print(
            f"{label:<38} calls={calls} p50={pct(samples, 0.50):7.1f} us  p99={pct(samples, 0.99):7.1f} us  "
            f"mean={statistics.fmean(samples) * 1e6:7.1f} us"
        )

    run("authenticate+can (warm, sig cached)", cold=False)
    run("authenticate+can (cold, ES256 verify)", cold=True)


if __name__ == "__main__":
    main()
