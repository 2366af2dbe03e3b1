"""A real OpenID provider for the single sign-on tests: panva's ``oidc-provider`` (npm, pinned,
installed by scripts/setup.sh into build/oidc-provider) run by ``oidc_provider.mjs`` on 127.0.0.2.

127.0.0.2 and not 127.0.0.1: the platform's egress guard never reaches an address of its own host,
and a test opens 127.0.0.2 with NOVACRON_EGRESS_ALLOW (as ``test_url_credentials`` does).
``OidcProvider.disable`` disables an account at the provider (its tokens are refused from then on).
"""

from __future__ import annotations

import ctypes
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import ROOT, require

HOST = "127.0.0.2"
SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
PACKAGE_DIR = ROOT / "build" / "oidc-provider"
CLIENT_ID, CLIENT_SECRET = "novacron", "novacron-secret"


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class OidcProvider:
    issuer: str
    process: subprocess.Popen[bytes]

    def disable(self, account: str) -> None:
        httpx.post(f"{self.issuer}/test/disable/{account}", timeout=5).raise_for_status()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextmanager
def oidc_provider(redirect_uri: str, log: Path) -> Iterator[OidcProvider]:
    """The provider, listening, with the client ``novacron`` allowed to return to ``redirect_uri``."""
    node = shutil.which("node")
    require(node is not None, "node is not installed (scripts/setup.sh)")
    require(
        (PACKAGE_DIR / "node_modules" / "oidc-provider").is_dir(), f"run scripts/setup.sh: no {PACKAGE_DIR}"
    )
    port = _free_port()
    env = {"PATH": "/usr/bin:/bin", "OIDC_PROVIDER_DIR": str(PACKAGE_DIR)}
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [str(node), str(SCRIPT), HOST, str(port), redirect_uri],
            stdout=subprocess.PIPE,
            stderr=err,
            env=env,
            preexec_fn=_die_with_parent,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "ready" once it listens (EOF if it died)
        assert line.strip() == b"ready", f"oidc-provider did not start: see {log}"
        yield OidcProvider(f"http://{HOST}:{port}", proc)
    finally:
        proc.terminate()
        proc.wait(10)
