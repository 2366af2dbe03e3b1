"""Schema migrations with Alembic, applied at start-up on SQLite and PostgreSQL alike."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from novacron.db.base import Database

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
