"""PowerDNS Authoritative (Debian's ``pdns-server``) as the DNS provider.

We run our own ``pdns_server`` — never the system one — as a supervised engine of the node
(``monitoring/process.py``: restarted when it dies, stopped with the node, and dying with it even
when the node is killed), with its files under a private
directory of the state dir (``<state_dir>/gslb``, 0700): ``pdns.conf``, the SQLite zone database
(``pdns-backend-sqlite3``; its schema is the package's), the control socket and the log. It
listens on one address and port (loopback by default), runs LUA records
(``enable-lua-records``), takes the EDNS client subnet as the client's address
(``edns-subnet-processing``) and checks sites every ``health_interval_s`` seconds.

Publishing writes the zone's rows in one SQLite transaction (unless a newer generation is
already served, see ``service.py``) (WAL: pdns_server's readers never
wait for it nor see half of it); with its caches off, the next query is answered from them. So a
publication needs no reload, and works whether or not the server runs at that moment.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from pathlib import Path

from novacron.errors import Unavailable
from novacron.gslb import lua
from novacron.gslb.model import ZoneSpec
from novacron.gslb.provider import DnsProvider
from novacron.monitoring.process import EngineFailed, SupervisedProcess, free_loopback_port
from novacron.private import mkdir_private, write_private

PDNS_SERVER = "/usr/sbin/pdns_server"
PDNS_CONTROL = "/usr/bin/pdns_control"
SCHEMA = Path("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql")
DATABASE = "zones.sqlite"
READY_TIMEOUT_S = 15.0
#: the SOA's refresh, retry, expire and negative-answer TTL
SOA_TIMERS = "10800 3600 604800 30"


def _config(directory: Path, address: str, port: int, health_interval_s: int, web_port: int) -> str:
    return "\n".join(
        [
            "launch=gsqlite3",
            f"gsqlite3-database={directory / DATABASE}",
            f"local-address={address}",
            f"local-port={port}",
            f"socket-dir={directory}",
            "enable-lua-records=yes",
            "edns-subnet-processing=yes",
            f"lua-health-checks-interval={health_interval_s}",
            # answers follow the database at once (no cache to expire after a publication)
            "cache-ttl=0",
            "query-cache-ttl=0",
            "negquery-cache-ttl=0",
            "zone-cache-refresh-interval=0",
            # the status page (no API): what the supervisor polls to see it ready
            "webserver=yes",
            "webserver-address=127.0.0.1",
            f"webserver-port={web_port}",
            "webserver-allow-from=127.0.0.1",
            "daemon=no",
            "guardian=no",
            "disable-syslog=yes",
            "write-pid=no",
            "security-poll-suffix=",
            "",
        ]
    )


class PowerDNSServer(DnsProvider):
    """Our ``pdns_server`` on ``address``:``port`` with its files in ``directory``."""

    def __init__(self, directory: Path, address: str, port: int, health_interval_s: int = 2) -> None:
        self.directory = directory
        self.address = address
        self.port = port
        self.health_interval_s = health_interval_s
        self._engine: SupervisedProcess | None = None
        #: its status page on loopback: how the supervisor sees it ready (chosen at each start)
        self._web_port = 0

    @property
    def database(self) -> Path:
        return self.directory / DATABASE

    def _prepare_database(self) -> None:
        mkdir_private(self.directory)
        if not self.database.exists():
            fd = os.open(self.database, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
            with contextlib.closing(sqlite3.connect(self.database)) as db:
                db.executescript(SCHEMA.read_text())
                db.execute("PRAGMA journal_mode=WAL")

    def publish(self, zone: ZoneSpec) -> None:
        self._prepare_database()
        rows = _rows(zone)
        with contextlib.closing(sqlite3.connect(self.database, timeout=10.0, isolation_level=None)) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                self._replace(db, zone, rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @staticmethod
    def _replace(db: sqlite3.Connection, zone: ZoneSpec, rows: list[tuple[str, str, str, int]]) -> None:
        """Replace the zone unless a newer generation is served already (our own table)."""
        db.execute("CREATE TABLE IF NOT EXISTS novacron_publication (generation INTEGER NOT NULL)")
        served = db.execute("SELECT max(generation) FROM novacron_publication").fetchone()[0]
        if served is not None and served > zone.generation:
            return
        db.execute("DELETE FROM novacron_publication")
        db.execute("INSERT INTO novacron_publication (generation) VALUES (?)", (zone.generation,))
        db.execute("DELETE FROM records")
        db.execute("DELETE FROM domains")
        cur = db.execute("INSERT INTO domains (name, type) VALUES (?, 'NATIVE')", (zone.zone.rstrip("."),))
        domain_id = cur.lastrowid
        db.executemany(
            "INSERT INTO records (domain_id, name, type, content, ttl, prio, disabled, auth)"
            " VALUES (?, ?, ?, ?, ?, 0, 0, 1)",
            [(domain_id, *row) for row in rows],
        )

    def running(self) -> bool:
        """A pdns_server answers on this directory's control socket."""
        proc = subprocess.run(
            [PDNS_CONTROL, f"--config-dir={self.directory}", "rping"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return proc.returncode == 0 and "PONG" in proc.stdout

    def start(self) -> None:
        if self._engine is not None:
            return
        self._prepare_database()
        self._web_port = free_loopback_port()
        config = _config(self.directory, self.address, self.port, self.health_interval_s, self._web_port)
        write_private(self.directory / "pdns.conf", config)
        engine = SupervisedProcess(
            "pdns_server",
            [PDNS_SERVER, f"--config-dir={self.directory}"],
            f"http://127.0.0.1:{self._web_port}/",
            self.directory / "pdns.log",
            ready_timeout_s=READY_TIMEOUT_S,
        )
        try:
            engine.start()
        except EngineFailed as exc:
            engine.stop()
            raise Unavailable(f"PowerDNS did not start: {exc}") from exc
        self._engine = engine

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.stop()
            self._engine = None


def _rows(zone: ZoneSpec) -> list[tuple[str, str, str, int]]:
    """(name, type, content, ttl) of the zone's records: SOA, NS, and each name's LUA records."""
    apex = zone.zone.rstrip(".")
    soa = f"ns.{apex}. hostmaster.{apex}. {zone.serial} {SOA_TIMERS}"
    rows = [(apex, "SOA", soa, 3600), (apex, "NS", f"ns.{apex}.", 3600)]
    for name in zone.names:
        for rtype, content in lua.records(name, zone.regions):
            rows.append((name.name.rstrip("."), rtype, content, name.ttl))
    return rows
