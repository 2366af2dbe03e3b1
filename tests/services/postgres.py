"""A throwaway PostgreSQL 15 server for tests, started from Debian's binaries on loopback.

``initdb`` refuses to run as root, so when the tests run as root the server runs as the system
user ``novacron-test`` (created with ``useradd --system`` if missing) through ``runuser``. As any
other user it simply runs as that user. Data lives in a fresh directory, the server listens on a
free port on 127.0.0.1 and on a unix socket in a short directory under /tmp, and ``stop()``
removes everything.

Use from a pytest session fixture::

    @pytest.fixture(scope="session")
    def postgres(tmp_path_factory):
        server = start_postgres(tmp_path_factory.mktemp("pg"))
        yield server
        server.stop()

``server.url`` is a SQLAlchemy URL (``postgresql+psycopg2://...``) of a database created for the
tests; ``server.create_database(name)`` makes more (one per test module, say).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path(os.environ.get("NOVACRON_PG_BIN", "/usr/lib/postgresql/15/bin"))
SERVICE_USER = "novacron-test"
SUPERUSER = "postgres"
DEFAULT_DB = "novacron_test"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL binaries are missing or the server would not start."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _wait_gone(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _ensure_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        check=False,
        capture_output=True,
        text=True,
    )
    try:
        return pwd.getpwnam(name)
    except KeyError as exc:  # useradd failed and nobody else created it meanwhile
        raise PostgresUnavailable(f"cannot create the system user {name!r} (useradd failed)") from exc


@dataclass
class PostgresServer:
    """One running server; ``stop()`` shuts it down and deletes its files."""

    base_dir: Path
    socket_dir: Path
    port: int
    run_as: str | None
    host: str = "127.0.0.1"
    user: str = SUPERUSER
    dbname: str = DEFAULT_DB
    #: the options it was started with (``restart`` starts it again with them)
    opts: str = ""
    _stopped: bool = field(default=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    def url_for(self, dbname: str) -> str:
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{dbname}"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the test database."""
        return self.url_for(self.dbname)

    @property
    def dsn(self) -> str:
        """libpq DSN of the test database (for psycopg2 or psql)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.dbname}"

    def _cmd(self, *argv: str) -> list[str]:
        return ["runuser", "-u", self.run_as, "--", *argv] if self.run_as else list(argv)

    def _run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._cmd(*argv),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
        )

    def create_database(self, name: str) -> str:
        """Create a database (dropping any of that name first); return its SQLAlchemy URL."""
        import psycopg2

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url_for(name)

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def restart(self, timeout_s: float = 60.0) -> None:
        """Failure injection: stop at once (``-m immediate``, as a crash: no checkpoint, every
        session dropped) and start again on the same port, data and options."""
        pid = self.postmaster_pid()
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        if pid is not None:
            _wait_gone(pid, 15.0)
        self._start(timeout_s)

    def _start(self, timeout_s: float) -> subprocess.CompletedProcess[str]:
        return self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            self.opts,
            "-w",
            "-t",
            str(int(timeout_s)),
            "start",
            timeout=timeout_s + 10,
        )

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        pid = self.postmaster_pid()
        if pid is not None:
            self._run(
                str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "-t", "30", "stop"
            )
            _wait_gone(pid, 15.0)
        shutil.rmtree(self.base_dir, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _accessible_dir(parent: Path | None, run_as: str | None, prefix: str) -> Path:
    """A new directory under ``parent`` that ``run_as`` can reach, else one directly under /tmp.

    pytest's tmp dirs sit under 0700 directories owned by root, which another user cannot traverse.
    """
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
        cand = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        if run_as is None:
            return cand
        ok = (
            subprocess.run(
                ["runuser", "-u", run_as, "--", "test", "-x", str(cand)], capture_output=True, check=False
            ).returncode
            == 0
        )
        if ok:
            return cand
        shutil.rmtree(cand, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def start_postgres(
    tmp_root: Path | None = None,
    *,
    dbname: str = DEFAULT_DB,
    timeout_s: float = 60.0,
    attempts: int = 3,
    options: tuple[str, ...] = (),
) -> PostgresServer:
    """Start a fresh PostgreSQL 15 server and create ``dbname``; the caller must ``stop()`` it.
    ``options``: more server settings (``-c name=value``), e.g. a benchmark's pg_stat_statements.

    Raises :class:`PostgresUnavailable` when the binaries are missing or the server fails to start.
    """
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).exists():
            raise PostgresUnavailable(
                f"{PG_BIN / tool} not found: install Debian's postgresql-15 (bash scripts/setup.sh)"
            )
    run_as: str | None = None
    uid = gid = -1
    if os.geteuid() == 0:
        entry = _ensure_user(SERVICE_USER)
        run_as, uid, gid = SERVICE_USER, entry.pw_uid, entry.pw_gid

    base = _accessible_dir(tmp_root, run_as, "pg-")
    sock = Path(tempfile.mkdtemp(prefix="ncpg", dir="/tmp"))  # short: unix sockets cap at 107 bytes
    for d in (base, sock):
        if run_as:
            os.chown(d, uid, gid)
        d.chmod(0o700)

    server = PostgresServer(base_dir=base, socket_dir=sock, port=0, run_as=run_as, dbname=dbname)
    try:
        res = server._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(server.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        if res.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        last_error = ""
        for _ in range(attempts):
            server.port = _free_port()
            server.opts = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-p {server.port}",
                    f"-k {sock}",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=200",
                    "-c shared_buffers=64MB",
                    *options,
                ]
            )
            res = server._start(timeout_s)
            if res.returncode == 0:
                break
            last_error = f"pg_ctl start failed ({res.returncode}):\n{res.stderr}\n{server.log_tail()}"
            # most likely the port was taken between choosing and binding it: try another one
            time.sleep(0.2)
        else:
            raise PostgresUnavailable(last_error)
        server.create_database(dbname)
    except BaseException:
        server.stop()
        raise
    atexit.register(server.stop)  # a crashed session still shuts the server down
    return server


@contextlib.contextmanager
def postgres_server(tmp_root: Path | None = None, *, dbname: str = DEFAULT_DB) -> Iterator[PostgresServer]:
    """``with postgres_server() as pg: ...`` for code that prefers a context manager."""
    server = start_postgres(tmp_root, dbname=dbname)
    try:
        yield server
    finally:
        server.stop()
