"""Object-storage emulators for the backup target tests, started on loopback from what
scripts/setup.sh installs: ``moto_server`` (S3, PyPI), ``azurite-blob`` (Azure Blob, npm into
build/npm) and ``gcp-storage-emulator`` (GCS, PyPI). Each runs in its own process group and data
directory; ``stop()`` kills the group and removes the directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from novacron.backup.targets import AzureTarget, GCSTarget, S3Target, Target

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
AZURITE = ROOT / "build" / "npm" / "node_modules" / ".bin" / "azurite-blob"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class EmulatorUnavailable(RuntimeError):
    pass


def _free_port() -> int:
    from tests.conftest import free_port

    return free_port()


@dataclass
class Emulator:
    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def target(self, name: str | None = None) -> Target:
        """A target in a new bucket/container of this emulator."""
        name = name or "nc-" + uuid.uuid4().hex[:12]
        if self.kind == "s3":
            import boto3

            client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                region_name="us-east-1",
                aws_access_key_id="test",
                aws_secret_access_key="test",
            )
            client.create_bucket(Bucket=name)
            return S3Target(name, client=client)
        if self.kind == "azure":
            conn = (
                "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                f"AccountKey={AZURITE_KEY};BlobEndpoint={self.endpoint}/devstoreaccount1;"
            )
            return AzureTarget(name, conn)
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(
            project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": self.endpoint}
        )
        return GCSTarget(name, client=client, create=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _wait_port(proc: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorUnavailable(f"exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise EmulatorUnavailable(
        f"did not listen on port {port} within {timeout_s:.0f}s: {log.read_text()[-2000:]}"
    )


def start(kind: str) -> Emulator:
    """Start one emulator: "s3", "azure" or "gcs"."""
    workdir = Path(tempfile.mkdtemp(prefix=f"nc-{kind}-"))
    port = _free_port()
    env = dict(os.environ)
    if kind == "s3":
        exe = VENV_BIN / "moto_server"
        argv = [str(exe), "-H", "127.0.0.1", "-p", str(port)]
    elif kind == "azure":
        exe = AZURITE
        argv = [
            str(exe),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--loose",
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--silent",
            "--location",
            str(workdir),
        ]
    elif kind == "gcs":
        exe = VENV_BIN / "gcp-storage-emulator"
        argv = [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"]
    else:
        raise ValueError(kind)
    if not exe.exists():
        shutil.rmtree(workdir, ignore_errors=True)
        raise EmulatorUnavailable(f"{exe} is missing: run scripts/setup.sh")
    log = workdir / "emulator.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=env, start_new_session=True
        )
    emulator = Emulator(kind, port, proc, workdir)
    try:
        _wait_port(proc, port, log)
    except BaseException:
        emulator.stop()
        raise
    return emulator
