"""Schema migrations with Alembic, applied at start-up on SQLite and PostgreSQL alike."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from novacron.db.base import Database

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(db: Database) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    return cfg


def upgrade(db: Database, revision: str = "head", encryption: Any = None) -> None:
    """Migrate to ``revision``; ``encryption`` (the encryption service) lets the migrations that
    seal stored secrets do so (without it, the server's start-up seals them)."""
    cfg = alembic_config(db)
    cfg.attributes["encryption"] = encryption
    with db.engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        # SQLite alters a table by copying and dropping it: with foreign keys on, dropping `vms`
        # would cascade-delete every row that refers to it. The pragma only works outside a
        # transaction, so it is set on the driver's connection before ours begins.
        if sqlite:
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
                if sqlite and (broken := conn.exec_driver_sql("PRAGMA foreign_key_check").all()):
                    raise RuntimeError(f"migration left rows with dangling references: {broken[:5]}")
        finally:
            if sqlite:
                conn.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]
    if cfg.attributes.get("sealed"):
        # the clear values the migration replaced are still in SQLite's free pages and WAL
        scrub_free_pages(db)


def scrub_free_pages(db: Database) -> None:
    """On SQLite: rewrite the file (VACUUM) and empty the WAL, so replaced clear values are gone."""
    if not db.url.startswith("sqlite"):
        return  # PostgreSQL's dead tuples go at its next VACUUM; its files are the server's own
    # on the driver's connection: the engine would open a transaction, and VACUUM runs outside one
    raw = db.engine.raw_connection()
    try:
        for statement in ("PRAGMA wal_checkpoint(TRUNCATE)", "VACUUM", "PRAGMA wal_checkpoint(TRUNCATE)"):
            raw.driver_connection.execute(statement)  # type: ignore[union-attr]
    except Exception as exc:  # busy readers: secure_delete still zeroes pages as they are reused
        log.warning("could not scrub the database file of replaced secrets now: %s", exc)
    finally:
        raw.close()
