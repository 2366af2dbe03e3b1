"""The throwaway PostgreSQL server of tests/services/postgres.py really starts and answers."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.services.postgres import PostgresServer, _alive, start_postgres

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    server = start_postgres(tmp_path_factory.mktemp("pg"))
    yield server
    server.stop()


def test_select_one_over_sqlalchemy(pg: PostgresServer) -> None:
    assert pg.url.startswith("postgresql+psycopg2://")
    engine = create_engine(pg.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar_one() == 1
            version = conn.execute(text("show server_version")).scalar_one()
            assert str(version).startswith("15.")
            assert conn.execute(text("select current_database()")).scalar_one() == pg.dbname
    finally:
        engine.dispose()


def test_listens_on_loopback_port_and_socket(pg: PostgresServer) -> None:
    with socket.create_connection(("127.0.0.1", pg.port), timeout=5):
        pass
    assert (pg.socket_dir / f".s.PGSQL.{pg.port}").exists()
    assert len(str(pg.socket_dir / f".s.PGSQL.{pg.port}")) < 107


def test_server_runs_as_non_root(pg: PostgresServer) -> None:
    pid = pg.postmaster_pid()
    assert pid is not None
    assert os.stat(f"/proc/{pid}").st_uid != 0


def test_create_database_gives_separate_database(pg: PostgresServer) -> None:
    url = pg.create_database("novacron_extra")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("create table t (x int)"))
            conn.execute(text("insert into t values (41)"))
            assert conn.execute(text("select x + 1 from t")).scalar_one() == 42
            assert conn.execute(text("select current_database()")).scalar_one() == "novacron_extra"
    finally:
        engine.dispose()


def test_stop_removes_everything(tmp_path: Path) -> None:
    server = start_postgres(tmp_path)
    pid = server.postmaster_pid()
    assert pid is not None
    base, sock = server.base_dir, server.socket_dir
    server.stop()
    assert not base.exists() and not sock.exists()
    assert not _alive(pid)
    server.stop()  # idempotent
