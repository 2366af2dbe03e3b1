"""An install made by an older version: clear secrets in the database, a clear CA key on disk,
world-readable files. Its first start on this version seals and scrubs them and keeps working."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization

from novacron.db.base import Database
from novacron.db.migrate import upgrade
from novacron.db.models import BackupTarget, CertificateAuthority, SigningKey
from novacron.identity.keys import generate_key_pair
from novacron.identity.pki import _new_ca
from tests.conftest import destroy_server, make_server

LEGACY_SECRET = "legacy-" + uuid.uuid4().hex


def _older_install(state: Path) -> tuple[str, str]:
    """The database at revision 0010 with what that version stored in clear; returns (kid, public)."""
    db = Database(f"sqlite:///{state}/novacron.db")
    upgrade(db, "0010")
    private_pem, public_pem = generate_key_pair("ES256")
    ca_cert, ca_key = _new_ca()
    with db.session() as s:
        s.add(
            SigningKey(
                kid="key-legacy", alg="ES256", private_pem=private_pem, public_pem=public_pem, active=True
            )
        )
        s.add(CertificateAuthority(name="platform", cert_pem=ca_cert.decode(), key_pem=ca_key.decode()))
        s.add(
            BackupTarget(
                id="bkt-legacy", name="legacy", type="local", chunk_size=1 << 20,
                config={"path": str(state / "legacy-target"), "sas_token": LEGACY_SECRET},
            )
        )  # fmt: skip
    db.engine.dispose()
    (state / "pki").mkdir(mode=0o755)
    (state / "pki" / "ca.key").write_bytes(ca_key)
    (state / "pki" / "ca.crt").write_bytes(ca_cert)
    for p in [state, *state.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return "key-legacy", public_pem


def test_first_start_seals_clear_secrets_scrubs_the_file_and_keeps_signing(tmp_path: Path) -> None:
    server = make_server(NOVACRON_COMPUTE_DRIVER="simulated", NOVACRON_NETWORK_BACKEND="none")
    kid, public_pem = _older_install(server.state_dir)
    server.start(timeout_s=120)
    try:
        state = server.state_dir
        db = state / "novacron.db"
        raw = b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())
        assert b"PRIVATE KEY" not in raw  # neither in live rows nor in free pages or the WAL
        assert LEGACY_SECRET.encode() not in raw
        assert not (state / "pki" / "ca.key").exists()
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        assert "novacron.db: 0644 -> 0600" in server.log_path.read_text()
        # the sealed legacy key still signs: a token the server issues verifies with its public key
        token = server.token()
        assert jwt.get_unverified_header(token)["kid"] == kid
        jwt.decode(
            token,
            serialization.load_pem_public_key(public_pem.encode()),  # type: ignore[arg-type]
            algorithms=["ES256"],
            options={"verify_aud": False},
        )
        with server.client(token) as c:
            target = c.get("/v1/backup-targets").json()["items"][0]
            assert target["config"]["sas_token"] == "***" and target["secrets_set"] == ["sas_token"]
            assert httpx.get(f"{server.url}/v1/vms", headers=c.headers).status_code == 200
    finally:
        destroy_server(server)
