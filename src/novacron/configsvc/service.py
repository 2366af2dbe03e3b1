"""Reading and changing the live configuration: validated, versioned, published.

A change is a partial patch merged into the newest document (``null`` takes a key back to its
start-up value), validated whole (bounds per field, then the rules between fields), and stored
as a new version; ``expected_version`` (the API's ``If-Match``) refuses a change made on a copy
older than what is stored, so two operators cannot silently undo each other. Each new version
publishes ``config.changed``: every replica's ``live.LiveConfig`` applies it (``live.py``), and
the replica that wrote it does so as its transaction commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from novacron.configsvc import schema
from novacron.db.models import ConfigVersion
from novacron.errors import Conflict, FieldError, InvalidInput, NotFound, PreconditionFailed
from novacron.events import publish
from novacron.service import Service

HISTORY_MAX = 1000


@dataclass(frozen=True)
class ConfigState:
    """A version of the live configuration: what operators set and every value in force."""

    version: int
    document: dict[str, Any]
    effective: dict[str, dict[str, Any]]
    author: str
    reason: str
    created_at: datetime | None
    rollback_of: int | None
    #: the version the replica that answers runs with (older than ``version`` for a moment after
    #: a change made on another replica)
    applied_version: int


@dataclass(frozen=True)
class Change:
    """One live setting that differs between two versions."""

    key: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Diff:
    old: int
    new: int
    changes: list[Change]


def latest(session: Session) -> ConfigVersion | None:
    return session.scalar(select(ConfigVersion).order_by(ConfigVersion.version.desc()).limit(1))


def merge(document: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``document`` with ``patch``'s keys set (a ``None`` value removes the key)."""
    out = {section: dict(keys) for section, keys in document.items()}
    for section, keys in patch.items():
        target = out.setdefault(section, {})
        for key, value in (keys or {}).items():
            if value is None:
                target.pop(key, None)
            else:
                target[key] = value
    return {section: keys for section, keys in out.items() if keys}


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The ``section.key`` names whose set values differ between two documents."""
    keys = {(s, k) for doc in (old, new) for s, ks in doc.items() for k in ks}
    return sorted(f"{s}.{k}" for s, k in keys if old.get(s, {}).get(k) != new.get(s, {}).get(k))


def invalid(errors: list[FieldError]) -> InvalidInput:
    first = errors[0]
    exc = InvalidInput(first.field, first.reason)
    exc.fields = errors
    return exc


def validate(document: dict[str, Any]) -> dict[str, Any]:
    """The document checked against each field's type and bounds (``InvalidInput`` naming every
    offending field, ``scheduler.placement_strategy``), in its canonical form."""
    try:
        parsed = schema.LiveDocument.model_validate(document)
    except ValidationError as exc:
        raise invalid(
            [FieldError(".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        ) from None
    return {section: keys for section, keys in parsed.model_dump(exclude_none=True).items() if keys}


class ConfigService(Service):
    """The live configuration as the caller (a platform administrator) reads and changes it."""

    def state(self, version: int | None = None) -> ConfigState:
        """The newest version (or ``version``), 0 being the start-up values."""
        if version is None:
            row = latest(self.session)
            return self._state(row if row is not None else self.get(0))
        return self._state(self.get(version))

    def effective(self, document: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return schema.effective(self.ctx.live_base, document)

    def _state(self, row: ConfigVersion) -> ConfigState:
        document = dict(row.document or {})
        live = self.ctx.live_config
        return ConfigState(
            version=row.version,
            document=document,
            effective=self.effective(document),
            author=row.author,
            reason=row.reason,
            created_at=row.created_at,
            rollback_of=row.rollback_of,
            applied_version=live.version if live is not None else 0,
        )

    def get(self, version: int) -> ConfigVersion:
        row = self.session.get(ConfigVersion, version)
        if row is None and version == 0:
            return ConfigVersion(
                version=0, document={}, author="", reason="start-up values", rollback_of=None
            )
        if row is None:
            raise NotFound("config version", str(version))
        return row

    def change(
        self, patch: dict[str, Any], *, reason: str, expected_version: int | None = None
    ) -> ConfigState:
        """A new version: the newest document with ``patch`` merged in (the newest itself when the
        patch changes nothing)."""
        now = latest(self.session)
        version = now.version if now is not None else 0
        if expected_version is not None and expected_version != version:
            raise PreconditionFailed(
                f"The configuration changed since you read it (now version {version}); "
                "read it again and retry."
            )
        document = validate(merge(now.document if now is not None else {}, patch))
        self._check_rules(document)
        if now is not None and document == now.document:
            return self._state(now)
        return self._state(self._store(version + 1, document, reason))

    def rollback(self, version: int, *, reason: str) -> ConfigState:
        """A new version whose document is ``version``'s (history keeps everything in between)."""
        document = validate(self.get(version).document)  # its bounds may have tightened since
        self._check_rules(document)
        now = latest(self.session)
        new = (now.version if now else 0) + 1
        return self._state(self._store(new, document, reason or f"rollback to {version}", version))

    def history(self, limit: int = 50) -> list[ConfigState]:
        """The newest versions first."""
        stmt = select(ConfigVersion).order_by(ConfigVersion.version.desc()).limit(min(limit, HISTORY_MAX))
        return [self._state(row) for row in self.session.scalars(stmt)]

    def diff(self, old: int, new: int | None = None) -> Diff:
        """The live settings whose values in force differ between two versions (0: start-up;
        ``new`` None: the newest)."""
        before, after = self.state(old), self.state(new)
        changes = [
            Change(f"{section}.{key}", before.effective[section][key], value)
            for section, keys in after.effective.items()
            for key, value in keys.items()
            if before.effective[section][key] != value
        ]
        return Diff(before.version, after.version, changes)

    def _check_rules(self, document: dict[str, Any]) -> None:
        values = self.effective(document)
        login = values["login"]
        if login["backoff_s"] > login["backoff_max_s"]:
            raise InvalidInput(
                "login.backoff_s", f"must not exceed login.backoff_max_s ({login['backoff_max_s']})"
            )

    def _store(
        self, version: int, document: dict[str, Any], reason: str, rollback_of: int | None = None
    ) -> ConfigVersion:
        before = latest(self.session)
        row = ConfigVersion(
            version=version,
            document=document,
            author=self.principal.username,
            reason=reason,
            rollback_of=rollback_of,
        )
        self.session.add(row)
        try:
            self.session.flush()
        except IntegrityError:
            raise Conflict(
                "Another change was stored at the same moment; read the configuration again and retry."
            ) from None
        changed = changed_keys(before.document if before else {}, document)
        publish(
            self.session,
            "config.changed",
            "config",
            str(version),
            tenant_id=None,
            version=version,
            author=row.author,
            reason=reason,
            keys=changed,
            rollback_of=rollback_of,
        )
        live = self.ctx.live_config
        if live is not None:
            # read-your-writes on this replica: applied as the transaction commits, not a bus round later
            event.listen(self.session, "after_commit", lambda _s: live.apply(version, document), once=True)
        return row
