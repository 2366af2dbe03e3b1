"""A throwaway single-node Ceph 16 cluster for tests: one monitor, one manager, one OSD on a file.

Started from Debian 12's packages (``ceph-mon``, ``ceph-mgr``, ``ceph-osd``; ``scripts/setup.sh``)
without systemd or cephadm: a monmap made with ``monmaptool``, the monitor's store with
``ceph-mon --mkfs``, then each daemon in the foreground with every file (config, stores, sockets,
logs, the OSD's BlueStore block file) under one directory, on a free loopback port. Authentication
is cephx, as a real cluster's: ``keyring`` holds the monitor's, the daemons' and client.admin's keys
(what the tests' own ``ceph``/``rbd``/``qemu-io`` calls use through the conf), and
``client.novacron.keyring`` (mode 0600) the platform's client, allowed the ``rbd`` pool only
(``profile rbd``). The pool ``rbd`` has size 1. ``stop()`` kills the daemons (by their pids) and
removes the directory.

``python -m tests.services.ceph`` starts one, prints how long it took, the daemons' memory and CPU
time, and stops it (the figures in docs/architecture.md, "Ceph RBD").
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT_S = 120.0
#: the OSD's BlueStore file (sparse): room for tests' small volumes
OSD_SIZE = 4 << 30


class CephUnavailable(RuntimeError):
    """The Ceph binaries are missing or the cluster did not become ready in time."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Ceph:
    root: Path
    fsid: str
    port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    started_in_s: float = 0.0

    @property
    def conf(self) -> Path:
        return self.root / "ceph.conf"

    @property
    def client_keyring(self) -> Path:
        """The keyring of ``client.novacron`` (NOVACRON_RBD_USER=novacron), mode 0600."""
        return self.root / "client.novacron.keyring"

    def add_key(self, entity: str, *caps: str) -> str:
        """Create ``entity``'s key with ``caps`` (pairs: service, grant); its keyring text."""
        return self.ceph("auth", "get-or-create", entity, *caps)

    def ceph(self, *args: str, timeout_s: float = 30) -> str:
        out = subprocess.run(
            ["ceph", "-c", str(self.conf), *args], capture_output=True, text=True, timeout=timeout_s
        )
        if out.returncode != 0:
            raise CephUnavailable(f"ceph {' '.join(args)}: {out.stderr.strip()[-400:]}")
        return out.stdout

    def _daemon(self, name: str, *argv: str) -> None:
        log = open(self.root / f"{name}.out", "wb")  # noqa: SIM115 (the daemon's, closed with it)
        self.procs[name] = subprocess.Popen([*argv, "-f", "-c", str(self.conf)], stdout=log, stderr=log)

    def usage(self) -> dict[str, dict[str, float]]:
        """Each daemon's resident memory (MiB) and CPU time so far (s)."""
        tick = 100.0
        out = {}
        for name, proc in self.procs.items():
            stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            rss = int(Path(f"/proc/{proc.pid}/statm").read_text().split()[1]) * 4096 / (1 << 20)
            out[name] = {"rss_mib": round(rss, 1), "cpu_s": round((int(stat[11]) + int(stat[12])) / tick, 2)}
        return out

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.kill()
        for proc in self.procs.values():
            proc.wait(timeout=30)
        self.procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)


def _config(root: Path, fsid: str, port: int) -> str:
    return f"""[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{port}]
public network = 127.0.0.0/8
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
run dir = {root}/run
admin socket = {root}/run/$name.$pid.asok
log file = {root}/log/$name.log
mon data = {root}/$name
mgr data = {root}/$name
osd data = {root}/$name
keyring = {root}/keyring
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd objectstore = bluestore
bluestore block path = {root}/osd-0.block
bluestore block create = true
bluestore block size = {OSD_SIZE}
osd memory target = 939524096
bluestore cache autotune = false
bluestore cache size = 134217728
mgr disabled modules = dashboard
"""


def _run(*argv: str) -> None:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise CephUnavailable(f"{argv[0]}: {out.stderr.strip()[-400:]}")


def start_ceph(root: Path | None = None) -> Ceph:
    """One monitor, one manager, one OSD, and the pool ``rbd``; ready for ``rbd`` and QEMU."""
    if shutil.which("ceph-mon") is None or shutil.which("ceph-osd") is None:
        raise CephUnavailable("Ceph is not installed (scripts/setup.sh installs ceph-mon, -mgr, -osd)")
    root = root or Path(tempfile.mkdtemp(prefix="ncceph-"))
    started = time.monotonic()
    cluster = Ceph(root, str(uuid.uuid4()), _free_port())
    for sub in ("run", "log", "mon.a", "mgr.x", "osd.0"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cluster.conf.write_text(_config(root, cluster.fsid, cluster.port))
    try:
        keyring = str(root / "keyring")
        _run(
            "ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"
        )
        _run("ceph-authtool", keyring, "--gen-key", "-n", "client.admin", "--cap", "mon", "allow *",
             "--cap", "osd", "allow *", "--cap", "mgr", "allow *", "--cap", "mds", "allow *")  # fmt: skip
        _run("monmaptool", "--create", "--add", "a", f"127.0.0.1:{cluster.port}", "--fsid", cluster.fsid,
             str(root / "monmap"))  # fmt: skip
        _run("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(root / "monmap"), "-c", str(cluster.conf))
        cluster._daemon("mon", "ceph-mon", "-i", "a")
        cluster.ceph("status", timeout_s=60)
        with open(keyring, "a") as keys:  # every daemon reads its key from the one keyring
            keys.write(
                cluster.add_key("mgr.x", "mon", "allow profile mgr", "osd", "allow *", "mds", "allow *")
            )
        cluster._daemon("mgr", "ceph-mgr", "-i", "x")
        osd_uuid = str(uuid.uuid4())
        osd_id = cluster.ceph("osd", "new", osd_uuid).strip()
        with open(keyring, "a") as keys:
            osd_caps = ("mon", "allow profile osd", "mgr", "allow profile osd", "osd", "allow *")
            keys.write(cluster.add_key(f"osd.{osd_id}", *osd_caps))
        _run("ceph-osd", "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid, "-c", str(cluster.conf))
        cluster._daemon("osd", "ceph-osd", "-i", osd_id)
        cluster.ceph("osd", "pool", "create", "rbd", "8")
        cluster.ceph("osd", "pool", "set", "rbd", "size", "1", "--yes-i-really-mean-it")
        cluster.ceph("osd", "pool", "application", "enable", "rbd", "rbd")
        client = cluster.add_key("client.novacron", "mon", "profile rbd", "osd", "profile rbd pool=rbd",
                                 "mgr", "profile rbd pool=rbd")  # fmt: skip
        cluster.client_keyring.write_text(client)
        cluster.client_keyring.chmod(0o600)
        _wait_clean(cluster, started + START_TIMEOUT_S)
    except BaseException:
        cluster.stop()
        raise
    cluster.started_in_s = round(time.monotonic() - started, 1)
    return cluster


def _wait_clean(cluster: Ceph, deadline: float) -> None:
    while True:
        status = json.loads(cluster.ceph("status", "--format=json"))
        pgs = status.get("pgmap", {})
        states = {s["state_name"]: s["count"] for s in pgs.get("pgs_by_state", [])}
        if pgs.get("num_pgs") and states.get("active+clean") == pgs["num_pgs"]:
            return
        if time.monotonic() > deadline:
            raise CephUnavailable(f"the cluster is not active+clean in time: {status.get('health')}")
        time.sleep(0.5)


if __name__ == "__main__":
    ceph = start_ceph()
    try:
        print(f"active+clean in {ceph.started_in_s} s")
        print(json.dumps(ceph.usage()))
        time.sleep(30)
        print("after 30 s idle:", json.dumps(ceph.usage()))
    finally:
        ceph.stop()
