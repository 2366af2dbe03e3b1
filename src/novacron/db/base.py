"""Declarative base, id and time helpers, engine and session factory."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import DateTime, Engine, Integer, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """Opaque, unguessable ids with a type prefix (``vm-3fa9...``) so logs stay readable."""
    return f"{prefix}-{secrets.token_hex(8)}"


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes on SQLite too (it drops tzinfo on the way in)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Versioned:
    """Optimistic concurrency: ``version`` backs the ETag and ``If-Match``."""

    version: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012 - SQLAlchemy API


def make_engine(url: str, *, readonly: bool = False) -> Engine:
    """An engine; on SQLite, writers take the write lock up front and ``readonly`` ones never do."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # we issue BEGIN ourselves (below); pysqlite's implicit BEGIN would be DEFERRED
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            # a deleted or overwritten row (a re-wrapped key, an operation's dropped secrets) is
            # zeroed in the file rather than left readable in a free page
            cur.execute("PRAGMA secure_delete=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):  # type: ignore[no-untyped-def]
            # A deferred transaction that reads, then writes after another writer committed,
            # fails at once with "database is locked" (WAL snapshot too old). Taking the write
            # lock up front makes writers queue on the busy timeout instead. Readers need no
            # lock in WAL mode: their deferred transaction reads one consistent snapshot.
            conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class Database:
    """One engine and its session factory; passed around instead of a global."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        # every audit record written is linked into the hash chain in its transaction; listening
        # on this factory here (not on the Session class) registers the hook before any thread
        # opens a session: SQLAlchemy copies class-level listeners to a new subclass lazily
        from novacron.db.models.audit_chain import chain_new_records  # noqa: PLC0415 - imports this module

        event.listen(self.sessions, "before_flush", chain_new_records)
        self.read_engine = make_engine(url, readonly=True) if url.startswith("sqlite") else self.engine
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: commits on success, rolls back on any error."""
        s = self.sessions()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A unit of work that only reads: never waits for, nor holds, the SQLite write lock."""
        s = self.read_sessions()
        try:
            yield s
        finally:
            s.rollback()
            s.close()

    def create_all(self) -> None:
        from novacron.db import models  # noqa: F401 - registers the tables

        Base.metadata.create_all(self.engine)
