"""Brute-force protection for passwords: per-account and per-source exponential backoff.

Every failed password check counts against two keys: the account (the login identity of
``identity/lookup.py``: the same whether the tenant is spelled by name, by id or as
``name@tenant``, and whether or not the user or tenant exists, so the throttle says nothing
about which users or tenants exist and no respelling earns fresh tries) and the
source (the client address; an IPv6 /64, which one host usually holds whole). A key may fail
``free`` times; each failure after that blocks it for ``base * 2^(n - free)`` seconds (at
most ``max``). While a key is blocked its logins are answered 429 with ``Retry-After``
BEFORE any password is hashed, so a blocked attempt costs a database read, and a correct
password does not get through an active backoff either. A key's failures are forgotten
``reset`` seconds after its last one; a successful login clears its account's count (not
its source's: a bot must not reset its address with one account it owns). The counts live
in the ``login_failures`` table, so all API replicas share them; forgotten rows are pruned
as failures are recorded (at most once a minute per process).

The moment a key becomes blocked is a security event (``login.locked_out``), recorded with
an audit record (``account.lockout`` / ``source.lockout``), in the transaction that counts
the failure.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from novacron import events
from novacron.config import Settings
from novacron.db.base import Database, utcnow
from novacron.db.models import AuditRecord, LoginFailure
from novacron.identity.clientaddr import parse_address

_PRUNE_EVERY_S = 60.0
_REMEMBER_MAX = 10_000
#: how long a remembered block is believed without asking the database again: another replica
#: (or an administrator's password reset) may have lifted it meanwhile
_REMEMBER_S = 2.0


class Throttled(Exception):
    """Too many failed logins for this account or source: wait ``retry_after`` seconds."""

    def __init__(self, remaining_s: float) -> None:
        self.retry_after = max(1, math.ceil(remaining_s))
        super().__init__(f"retry after {self.retry_after} s")
        self.remaining_s = remaining_s


@dataclass(frozen=True)
class Lockout:
    """A key that this failure blocked for the first time since its count started."""

    kind: str  # "account" or "source"
    failures: int
    until: datetime


def account_key(identity: str) -> str:
    # hashed: people type their password into the username field; it must not sit here in clear
    return "account:" + hashlib.sha256(identity.strip().lower().encode()).hexdigest()


def source_key(source: str | None) -> str | None:
    if not source:
        return None
    addr = parse_address(source)
    if addr is None:
        return "source:" + source[:64]
    if isinstance(addr, ipaddress.IPv6Address):
        return "source:" + str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return "source:" + str(addr)


class LoginThrottle:
    def __init__(self, db: Database, settings: Settings | Callable[[], Settings]) -> None:
        self.db = db
        #: a callable: the settings in force when a login is counted (the live configuration may
        #: change the thresholds while the process runs, ``configsvc``)
        self._settings = settings
        self._pruned_at = 0.0
        self._lock = threading.Lock()
        #: blocks this process has seen (key -> (until, when the database said so)): a flood of
        #: blocked attempts costs one database read per key every ``_REMEMBER_S``. Only ever
        #: refuses what the database said is blocked a moment ago.
        self._blocked: dict[str, tuple[datetime, float]] = {}
        #: attempts of each key being hashed in this process (``admit``/``release``)
        self._inflight: dict[str, int] = {}

    @property
    def settings(self) -> Settings:
        return self._settings() if callable(self._settings) else self._settings

    def _keys(self, username: str, source: str | None) -> dict[str, int]:
        """Each key with the failures it may have before its backoff starts."""
        keys = {account_key(username): self.settings.login_account_failures}
        if (src := source_key(source)) is not None:
            keys[src] = self.settings.login_source_failures
        return keys

    def check(self, session: Session, username: str, source: str | None) -> None:
        """Raise ``Throttled`` while the account or the source is blocked (before any hashing)."""
        now = utcnow()
        keys = self._keys(username, source)
        until = max((u for k in keys if (u := self._remembered(k, now)) is not None), default=None)
        if until is None:
            rows = session.execute(
                select(LoginFailure.key, LoginFailure.blocked_until).where(
                    LoginFailure.key.in_(keys), LoginFailure.blocked_until > now
                )
            ).all()
            blocks = [(key, blocked) for key, blocked in rows if blocked is not None]
            for key, blocked in blocks:
                self._remember(key, blocked)
            until = max((blocked for _, blocked in blocks), default=None)
        if until is not None:
            raise Throttled((until - now).total_seconds())

    def admit(self, session: Session, username: str, source: str | None) -> list[str]:
        """``check``, then take a place among the attempts being hashed right now; give the keys
        back with ``release`` once the attempt is counted. Past a key's free failures only one
        attempt at a time: the count is written only after the ~0.35 s hash, so a burst checked
        all at once was hashed whole (33 guesses where 5 were allowed, again after every backoff).
        The places are this process's: each replica admits at most one such attempt per key."""
        keys = self._keys(username, source)
        # the place is taken before the counts are read: an attempt that ends in between records
        # its failure before giving its place back, so this one sees either its place or its count
        with self._lock:
            busy = {key: self._inflight.get(key, 0) for key in keys}
            for key in keys:
                self._inflight[key] = busy[key] + 1
        try:
            self.check(session, username, source)
            cutoff = utcnow() - timedelta(seconds=self.settings.login_reset_s)
            rows = session.execute(
                select(LoginFailure.key, LoginFailure.failures, LoginFailure.last_failure_at).where(
                    LoginFailure.key.in_(keys)
                )
            ).all()
            counted = {key: failures for key, failures, last in rows if last >= cutoff}
            for key, free in keys.items():
                if busy[key] and counted.get(key, 0) + busy[key] >= free:
                    raise Throttled(1.0)  # about one hash from now
        except BaseException:
            self.release(list(keys))
            raise
        return list(keys)

    def release(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                busy = self._inflight.pop(key, 0) - 1
                if busy > 0:
                    self._inflight[key] = busy

    def _remembered(self, key: str, now: datetime) -> datetime | None:
        until, seen = self._blocked.get(key, (None, 0.0))
        if until is None or until <= now or time.monotonic() - seen > _REMEMBER_S:
            return None
        return until

    def _remember(self, key: str, until: datetime) -> None:
        with self._lock:
            if len(self._blocked) >= _REMEMBER_MAX:
                now = utcnow()
                self._blocked = {k: v for k, v in self._blocked.items() if self._remembered(k, now)}
                if len(self._blocked) >= _REMEMBER_MAX:
                    return
            self._blocked[key] = (until, time.monotonic())

    def failed(self, session: Session, username: str, source: str | None) -> list[Lockout]:
        """Count one failed password; returns the keys this failure blocked for the first time."""
        now = utcnow()
        cutoff = now - timedelta(seconds=self.settings.login_reset_s)
        table: Any = LoginFailure.__table__
        dialect = session.get_bind().dialect.name
        insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
        lockouts = []
        for key, free in self._keys(username, source).items():
            # one statement, so concurrent failures on several replicas never lose a count
            stmt = (
                insert(table)
                .values(key=key, failures=1, last_failure_at=now, blocked_until=None)
                .on_conflict_do_update(
                    index_elements=[table.c.key],
                    set_={
                        "failures": case((table.c.last_failure_at < cutoff, 1), else_=table.c.failures + 1),
                        "last_failure_at": now,
                    },
                )
                .returning(table.c.failures)
            )
            failures = int(session.execute(stmt).scalar_one())
            if failures < free:
                continue
            settings = self.settings
            wait = min(settings.login_backoff_s * 2 ** min(failures - free, 40), settings.login_backoff_max_s)
            until = now + timedelta(seconds=wait)
            session.execute(table.update().where(table.c.key == key).values(blocked_until=until))
            self._remember(key, until)
            if failures == free:
                lockouts.append(Lockout(key.split(":", 1)[0], failures, until))
        self._prune(session, cutoff)
        return lockouts

    def succeeded(self, session: Session, username: str) -> None:
        """A correct password, or an administrator setting a new one: the account is unblocked
        (here at once; on other replicas within ``_REMEMBER_S``)."""
        key = account_key(username)
        session.execute(delete(LoginFailure).where(LoginFailure.key == key))
        with self._lock:
            self._blocked.pop(key, None)

    def _prune(self, session: Session, cutoff: datetime) -> None:
        with self._lock:
            if time.monotonic() - self._pruned_at < _PRUNE_EVERY_S:
                return
            self._pruned_at = time.monotonic()
        session.execute(
            delete(LoginFailure).where(
                LoginFailure.last_failure_at < cutoff,
                or_(LoginFailure.blocked_until.is_(None), LoginFailure.blocked_until < utcnow()),
            )
        )


def record_lockouts(
    session: Session,
    lockouts: list[Lockout],
    *,
    username: str,
    source: str | None,
    user_id: str | None,
    tenant_id: str | None,
) -> None:
    """A security event and an audit record for each key that just became blocked.

    An account lockout names the user and lands in its tenant (its tenant-admin sees the audit
    record, with the address; its users see the event, without); a source lockout is the
    platform's (admins). An unknown username gets the same records,
    without a user id, so the responses and timing stay those of a real account."""
    for lock in lockouts:
        account = lock.kind == "account"
        data: dict[str, Any] = {"username": username[:64], "failures": lock.failures}
        if not account:  # an account's event is seen by its whole tenant: the address only in the audit log
            data["source"] = source
        events.publish(
            session,
            "login.locked_out",
            "user" if account else "source",
            (user_id or "unknown") if account else (source or "unknown")[:40],
            tenant_id=tenant_id if account else None,
            kind=lock.kind,
            until=lock.until.isoformat(),
            **data,
        )
        session.add(
            AuditRecord(
                actor_id=user_id if account else None,
                actor_name=username[:64],
                tenant_id=tenant_id if account else None,
                action=f"{lock.kind}.lockout",
                method="POST",
                path="/v1/tokens",
                resource_id=((user_id if account else source) or "")[:40] or None,
                source_ip=source,
                status_code=429,
                outcome="denied",
                detail=json.dumps({"failures": lock.failures, "blocked_until": lock.until.isoformat()}),
            )
        )
