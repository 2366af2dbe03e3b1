"""Shared fixtures: real guests, real servers, real databases; nothing of ours is mocked."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from novacron.db.base import Database

ROOT = Path(__file__).resolve().parent.parent
#: the test guest's files (guest/build.py's output): NOVACRON_GUEST_DIR when set (scripts/test.sh sets it)
GUEST_OUT = Path(os.environ.get("NOVACRON_GUEST_DIR") or ROOT / "guest" / "out")
IN_CI = bool(os.environ.get("CI"))


def require(condition: bool, reason: str) -> None:
    """Skip on a developer machine that lacks a part; under CI a missing part is a failure."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


def short_tmpdir(prefix: str = "nc") -> Path:
    """Unix socket paths cap at 107 bytes: state dirs with sockets live directly under /tmp."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


_handed_out: set[int] = set()


def free_port() -> int:
    """A free port below the kernel's ephemeral range (32768+), so no outgoing connection of
    another test takes it between now and the moment a server binds it."""
    import random

    while True:
        port = random.randrange(20000, 32768)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port


@dataclass(frozen=True)
class Guest:
    kernel: Path
    initrd: Path
    disk: Path
    cmdline: str
    #: Debian's bzImage with its EFI stub, for UEFI boots (the PVH ``kernel`` is no EFI binary)
    efi_kernel: Path | None = None


#: starts qemu-guest-agent on its virtio-serial port, as a tenant's udev would (the test guest has
#: none); one shell line for user-data or the serial console
START_QGA = (
    'for p in /sys/class/virtio-ports/*; do [ "$(cat $p/name)" = org.qemu.guest_agent.0 ] && '
    "qemu-ga -d -m virtio-serial -p /dev/${p##*/} -t /tmp -f /tmp/qga.pid; done"
)


@pytest.fixture(scope="session")
def guest() -> Guest:
    """The test guest (Debian kernel + busybox initramfs), built by guest/build.py if missing."""
    if not (GUEST_OUT / "vmlinux").exists() or not (GUEST_OUT / "vmlinuz").exists():
        subprocess.run(
            [sys.executable, str(ROOT / "guest" / "build.py"), "--out", str(GUEST_OUT)], check=True
        )
    require(shutil.which("qemu-system-x86_64") is not None, "qemu-system-x86_64 is not installed")
    return Guest(
        kernel=GUEST_OUT / "vmlinux",
        initrd=GUEST_OUT / "initrd.img",
        disk=GUEST_OUT / "disk.qcow2",
        cmdline=(GUEST_OUT / "cmdline").read_text().strip(),
        efi_kernel=GUEST_OUT / "vmlinuz",
    )


class PortTaken(RuntimeError):
    pass


@dataclass
class Server:
    """A real ``novacron-server`` process on its own state dir and port."""

    state_dir: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.state_dir / "server.log"

    @property
    def tls(self) -> bool:
        """Whether the API listens on HTTPS (the default of a real node; make_server opts out)."""
        return self.env.get("NOVACRON_PLAIN_HTTP") != "1"

    @property
    def url(self) -> str:
        # a server listening on a lab's underlay address is reached there (it is local too)
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.env.get('NOVACRON_LISTEN_HOST', '127.0.0.1')}:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The platform CA the server's certificate chains to (made on its first start)."""
        return self.state_dir / "pki" / "ca.crt"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """What an httpx client of this server verifies its certificate with: the platform CA, or
        the CA of the operator's certificate (``NOVACRON_TEST_CA_FILE``, a test's own setting)."""
        if not self.tls:
            return True
        return ssl.create_default_context(cafile=self.env.get("NOVACRON_TEST_CA_FILE") or str(self.ca_file))

    @property
    def admin_password(self) -> str:
        return (self.state_dir / "admin-password").read_text().strip()

    def start(self, timeout_s: float = 30.0) -> None:
        for attempt in range(3):
            try:
                return self._start(timeout_s)
            except PortTaken:
                if attempt == 2:
                    raise
                # another process bound the port after we chose it: choose again
                self.port = free_port()
                self.env.update(NOVACRON_LISTEN_PORT=str(self.port), NOVACRON_AGENT_PORT=str(free_port()))

    def _start(self, timeout_s: float) -> None:
        import time

        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "novacron.server"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text()[offset:][-3000:]
                if "address already in use" in tail:
                    raise PortTaken(tail)
                raise RuntimeError(f"server exited: {tail}")
            try:
                if self.tls and not self.ca_file.exists():
                    raise httpx.ConnectError("no CA yet")
                if httpx.get(f"{self.url}/healthz", timeout=1, verify=self.verify).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer in {timeout_s}s: {self.log_path.read_text()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def token(self, username: str = "admin", password: str | None = None, tenant: str | None = None) -> str:
        """A token for ``username``; users of a tenant other than ``default`` name it (its name
        or id), or log in as ``name@tenant``."""
        body = {"username": username, "password": password or self.admin_password}
        r = httpx.post(
            f"{self.url}/v1/tokens",
            json={**body, "tenant": tenant} if tenant else body,
            timeout=10,
            verify=self.verify,
        )
        r.raise_for_status()
        return str(r.json()["access_token"])

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token or self.token()}"},
            timeout=30,
            verify=self.verify,
        )


def make_server(**env_overrides: str) -> Server:
    state = short_tmpdir()
    env = dict(os.environ)
    env.update(
        # the suite's servers speak plain HTTP on loopback (fast, and what every test was written
        # for); a test of TLS, or of a non-loopback listener, passes NOVACRON_PLAIN_HTTP="0"
        NOVACRON_PLAIN_HTTP="1",
        NOVACRON_STATE_DIR=str(state),
        NOVACRON_LISTEN_PORT=str(free_port()),
        NOVACRON_AGENT_PORT=str(free_port()),
        NOVACRON_HOST_NAME=f"test-{state.name}",
    )
    env.update(env_overrides)
    return Server(state_dir=state, port=int(env["NOVACRON_LISTEN_PORT"]), env=env)


def destroy_server(server: Server) -> None:
    """Stop the server and kill every QEMU it left behind (they outlive it by design)."""
    server.stop()
    subprocess.run(["pkill", "-9", "-f", f"{server.state_dir}/"], check=False)
    release_host_network(server)
    release_taps(server.state_dir)
    shutil.rmtree(server.state_dir, ignore_errors=True)


def release_taps(state_dir: Path) -> None:
    """Delete the persistent taps of the VMs a killed QEMU left (the platform's own delete would
    have removed them; left behind, hundreds piled up on the default bridge across runs)."""
    if os.geteuid() != 0:
        return
    names = set()
    for launch in state_dir.glob("**/launch.json"):
        with contextlib.suppress(OSError):
            names.update(re.findall(r"ifname=([A-Za-z0-9_.-]+)", launch.read_text()))
    for name in sorted(names):
        subprocess.run(["ip", "link", "del", name], check=False, capture_output=True)


def release_host_network(server: Server) -> None:
    """Remove the tenant-network datapath an all-in-one server's embedded agent made in the root
    namespace (bridges, VXLANs, taps, DHCP and router namespaces, dnsmasq), and only its own: other
    servers of the same kernel keep theirs."""
    net_dir = server.state_dir / "network"
    if not net_dir.is_dir() or os.geteuid() != 0 or server.env.get("NOVACRON_NETWORK_BACKEND") == "none":
        return
    from novacron.network.linux import LinuxBackend

    LinuxBackend.for_host(net_dir, None, server.env["NOVACRON_HOST_NAME"]).release()


def started_server() -> Iterator[Server]:
    """A default server, started, and destroyed when the generator is closed (for fixtures)."""
    srv = make_server()
    srv.start()
    try:
        yield srv
    finally:
        destroy_server(srv)


@pytest.fixture
def server() -> Iterator[Server]:
    yield from started_server()


def import_guest_image(
    client: httpx.Client, guest: Guest, name: str = "test-guest", public: bool = True
) -> str:
    r = client.post(
        "/v1/images",
        json={
            "name": name,
            "public": public,
            "kernel_cmdline": guest.cmdline,
            "project_id": default_project(client),
        },
    )
    assert r.status_code == 201, r.text
    image_id = str(r.json()["id"])
    for part, path in (("kernel", guest.kernel), ("initrd", guest.initrd), ("file", guest.disk)):
        with path.open("rb") as f:
            r = client.put(
                f"/v1/images/{image_id}/{part}",
                content=f.read(),
                headers={"Content-Type": "application/octet-stream"},
            )
        assert r.status_code == 200, r.text
    assert r.json()["status"] == "active"
    return image_id


TENANT_PASSWORD = "correct-horse-battery-9"


def tenant_user(
    admin: httpx.Client, server: Server, name: str, role: str = "member"
) -> tuple[httpx.Client, str]:
    """A new tenant ``name`` with a project "main" and a user ``<name>-user`` of ``role``: that
    user's client and the project's id."""
    tenant = admin.post("/v1/tenants", json={"name": name}).json()
    r = admin.post("/v1/projects", json={"name": "main", "tenant_id": tenant["id"]})
    assert r.status_code == 201, r.text
    user = {"username": f"{name}-user", "password": TENANT_PASSWORD, "role": role, "tenant_id": tenant["id"]}
    assert admin.post("/v1/users", json=user).status_code == 201
    return server.client(server.token(f"{name}-user", TENANT_PASSWORD, name)), str(r.json()["id"])


def default_project(client: httpx.Client) -> str:
    r = client.get("/v1/projects", params={"name": "default"})
    assert r.status_code == 200, r.text
    return str(r.json()["items"][0]["id"])


def wait_task(client: httpx.Client, task_id: str, timeout_s: float = 120.0) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        task = client.get(f"/v1/tasks/{task_id}").json()
        if task["state"] in ("succeeded", "failed"):
            return dict(task)
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not finish in {timeout_s}s: {task}")


def wait_console(client: httpx.Client, vm_id: str, needle: str, timeout_s: float = 90.0) -> str:
    import time

    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        text = client.get(f"/v1/vms/{vm_id}/console-log").text
        if needle in text:
            return text
        time.sleep(0.3)
    raise AssertionError(f"{needle!r} not on the console of {vm_id} after {timeout_s}s:\n{text[-2000:]}")


def type_on_console(server: Server, client: httpx.Client, vm_id: str, command: str, done: str) -> None:
    """Type a command on the guest's serial console and wait until it prints ``done``."""

    import asyncio

    import websockets

    async def run() -> None:
        token = client.headers["Authorization"].partition(" ")[2]
        url = f"ws://127.0.0.1:{server.port}/v1/vms/{vm_id}/console"
        seen = b""
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send(f"\n{command}\n".encode())
            async with asyncio.timeout(120):
                while done.encode() not in seen:
                    message = await ws.recv()
                    seen += message if isinstance(message, bytes) else message.encode()

    asyncio.run(run())


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """One throwaway PostgreSQL 15 server for the session, run as a non-root user."""
    from tests.services.postgres import PostgresUnavailable, start_postgres

    try:
        pg = start_postgres()
    except PostgresUnavailable as exc:
        require(False, f"PostgreSQL could not start: {exc}")
        raise
    try:
        yield pg
    finally:
        pg.stop()


def _emulator(kind: str) -> Iterator[object]:
    from tests.services.object_stores import EmulatorUnavailable, start

    try:
        emulator = start(kind)
    except EmulatorUnavailable as exc:
        require(False, f"{kind} emulator could not start: {exc}")
        raise
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def s3_emulator() -> Iterator[object]:
    """moto_server (S3 API) on loopback; ``.target()`` makes a fresh bucket as a backup Target."""
    yield from _emulator("s3")


@pytest.fixture(scope="session")
def azure_emulator() -> Iterator[object]:
    """Azurite (Azure Blob API) on loopback; ``.target()`` makes a fresh container."""
    yield from _emulator("azure")


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[object]:
    """gcp-storage-emulator (GCS API) on loopback; ``.target()`` makes a fresh bucket."""
    yield from _emulator("gcs")


@contextlib.contextmanager
def in_process_app(state_dir: Path, **overrides: Any) -> Iterator[tuple[TestClient, str, Database]]:
    """The API app in this process (no background workers, no agent) on a fresh SQLite state dir:
    its client, the bootstrap admin's password and the database. ``overrides`` are Settings fields."""
    from dataclasses import replace

    from fastapi.testclient import TestClient

    from novacron.api.app import create_app
    from novacron.config import Settings
    from novacron.context import Context
    from novacron.db.base import Database
    from novacron.db.migrate import upgrade
    from novacron.identity.bootstrap import ensure_bootstrap
    from novacron.identity.tokens import TokenService

    settings = Settings(
        state_dir=state_dir, database_url=f"sqlite:///{state_dir}/nc.db", embedded_agent=False
    )
    settings = replace(settings, **overrides)
    settings.ensure_dirs()
    db = Database(settings.database_url)
    upgrade(db)
    password = ensure_bootstrap(db)
    assert password is not None
    ctx = Context(settings=settings, db=db, tokens=TokenService(db, settings))
    try:
        with TestClient(create_app(ctx, background=False)) as client:
            yield client, password, db
    finally:
        db.engine.dispose()


@pytest.fixture
def in_process_admin(tmp_path: Path) -> Iterator[TestClient]:
    """An in-process app's client, logged in as its admin."""
    with in_process_app(tmp_path) as (client, password, _db):
        r = client.post("/v1/tokens", json={"username": "admin", "password": password})
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        yield client
