"""Silences (held by Alertmanager, through its v2 API) and the list of current alerts.

A tenant's silence always carries ``tenant_id="<its tenant>"`` and ``novacron_scope="tenant"``
matchers, put there by the platform over whatever the caller sent, so it can only mute that
tenant's own alerts; a tenant sees only the silences that carry its matchers. Administrators may
silence anything. Current alerts are vmalert's pending and firing ones, plus the resolved ones
Alertmanager reported in the last day, each shown to the tenant it belongs to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from novacron.db.models import Alert
from novacron.errors import InvalidInput, NotFound, Unavailable
from novacron.monitoring.alerting.engines import AlertingStack
from novacron.monitoring.alerting.notify import alert_tenant, public_alert
from novacron.monitoring.alerting.rules import SCOPE, TENANT
from novacron.monitoring.alerting.service import check_matchers, owner_tenant
from novacron.service import Service

RESOLVED_SHOWN = timedelta(days=1)


@dataclass(frozen=True)
class SilenceSpec:
    """A silence as the caller asked for it."""

    matchers: list[dict[str, str]]
    duration_s: int
    comment: str
    starts_at: datetime | None = None
    #: administrators: silence one tenant's alerts (None: anything the matchers match)
    tenant_id: str | None = None


@dataclass(frozen=True)
class Silence:
    """A silence as Alertmanager holds it."""

    id: str
    matchers: list[dict[str, str]]
    starts_at: datetime
    ends_at: datetime
    comment: str
    created_by: str
    state: str
    tenant_id: str | None
    version: int = 1


def _op(matcher: dict[str, Any]) -> str:
    if matcher.get("isRegex"):
        return "=~" if matcher.get("isEqual", True) else "!~"
    return "=" if matcher.get("isEqual", True) else "!="


def _silence_of(raw: dict[str, Any]) -> Silence:
    matchers = [{"name": m["name"], "op": _op(m), "value": m["value"]} for m in raw.get("matchers") or []]
    return Silence(
        id=raw["id"],
        matchers=matchers,
        starts_at=datetime.fromisoformat(raw["startsAt"].replace("Z", "+00:00")),
        ends_at=datetime.fromisoformat(raw["endsAt"].replace("Z", "+00:00")),
        comment=raw.get("comment", ""),
        created_by=raw.get("createdBy", ""),
        state=(raw.get("status") or {}).get("state", ""),
        tenant_id=_silence_tenant(matchers),
    )


def _silence_tenant(matchers: list[dict[str, str]]) -> str | None:
    """The tenant a silence is confined to: it has both forced equality matchers."""
    equal = {m["name"]: m["value"] for m in matchers if m["op"] == "="}
    return equal.get(TENANT) if equal.get(SCOPE) == "tenant" else None


def _am_matcher(m: dict[str, str]) -> dict[str, Any]:
    return {
        "name": m["name"],
        "value": m["value"],
        "isRegex": "~" in m["op"],
        "isEqual": not m["op"].startswith("!"),
    }


class _EngineService(Service):
    def _stack(self) -> AlertingStack:
        stack = self.ctx.alerting
        if stack is None:
            raise Unavailable("Alerting is not running on this node.")
        return stack


class SilenceService(_EngineService):
    """Create, list and expire silences."""

    raises = (Unavailable,)

    def list(self) -> list[Silence]:
        """The silences the caller sees, newest first."""
        if self.ctx.alerting is None:  # no engines on this node: nothing is silenced
            return []
        try:
            raw = self._stack().silences()
        except httpx.HTTPError as exc:
            raise Unavailable("Alertmanager did not answer.", retry_after=5) from exc
        silences = [_silence_of(r) for r in raw]
        if not self.principal.is_global:
            silences = [s for s in silences if s.tenant_id == self.principal.tenant_id]
        return sorted(silences, key=lambda s: s.starts_at, reverse=True)

    def get(self, silence_id: str) -> Silence:
        """The silence of this id, if the caller sees it."""
        for silence in self.list():
            if silence.id == silence_id:
                return silence
        raise NotFound("silence", silence_id)

    def create(self, spec: SilenceSpec) -> Silence:
        """A new silence; a tenant's is confined to its own alerts whatever its matchers say."""
        check_matchers(spec.matchers)
        tenant_id = owner_tenant(self.session, self.principal, spec.tenant_id)
        matchers = list(spec.matchers)
        if tenant_id is not None:
            matchers = [m for m in matchers if m["name"] not in (TENANT, SCOPE)]
            matchers += [
                {"name": TENANT, "op": "=", "value": tenant_id},
                {"name": SCOPE, "op": "=", "value": "tenant"},
            ]
        if not matchers:
            raise InvalidInput("matchers", "at least one matcher is required")
        starts = spec.starts_at or datetime.now(UTC)
        try:
            ends = starts + timedelta(seconds=spec.duration_s)
        except OverflowError as exc:
            raise InvalidInput("starts_at", "too far in the future") from exc
        body = {
            "matchers": [_am_matcher(m) for m in matchers],
            "startsAt": starts.isoformat(),
            "endsAt": ends.isoformat(),
            "createdBy": self.principal.username,
            "comment": spec.comment,
        }
        try:
            silence_id = self._stack().create_silence(body)
        except httpx.HTTPStatusError as exc:
            raise InvalidInput(
                "matchers", f"Alertmanager refused the silence: {exc.response.text[:200]}"
            ) from exc
        except httpx.HTTPError as exc:
            raise Unavailable("Alertmanager did not answer.", retry_after=5) from exc
        return self.get(silence_id)

    def expire(self, silence_id: str) -> None:
        """End a silence now."""
        self.get(silence_id)
        try:
            self._stack().expire_silence(silence_id)
        except httpx.HTTPError as exc:
            raise Unavailable("Alertmanager did not answer.", retry_after=5) from exc


@dataclass(frozen=True)
class AlertView:
    """One alert as the API shows it."""

    name: str
    state: str
    severity: str
    rule_id: str | None
    tenant_id: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    active_at: datetime | None
    ends_at: datetime | None = None
    value: float | None = None


def _live(raw: dict[str, Any]) -> AlertView:
    shown = public_alert({"labels": raw.get("labels") or {}, "annotations": raw.get("annotations")})
    active = raw.get("activeAt")
    return AlertView(
        name=raw.get("name", ""),
        state=raw.get("state", ""),
        severity=shown["severity"],
        rule_id=shown["rule_id"],
        tenant_id=alert_tenant(raw.get("labels") or {}),
        labels=shown["labels"],
        annotations=shown["annotations"],
        active_at=datetime.fromisoformat(active.replace("Z", "+00:00")) if active else None,
        value=_finite(raw.get("value")),
    )


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class AlertService(_EngineService):
    """The current alerts the caller sees: pending, firing, and resolved in the last day."""

    raises = (Unavailable,)

    def list(self, state: str | None = None) -> list[AlertView]:
        """Pending and firing from vmalert, then the recently resolved; ``state`` filters."""
        try:
            active = self._stack().active_alerts() if self.ctx.alerting is not None else []
            live = [_live(a) for a in active]
        except httpx.HTTPError as exc:
            raise Unavailable("vmalert did not answer.", retry_after=5) from exc
        live = [a for a in live if self.principal.sees_tenant(a.tenant_id)]
        shown = {tuple(sorted(a.labels.items())) for a in live}
        since = datetime.now(UTC) - RESOLVED_SHOWN
        stmt = select(Alert).where(Alert.state == "resolved", Alert.updated_at >= since)
        if not self.principal.is_global:
            stmt = stmt.where(Alert.tenant_id == self.principal.tenant_id)
        resolved = [
            AlertView(
                a.name,
                "resolved",
                a.severity,
                a.rule_id,
                a.tenant_id,
                dict(a.labels),
                dict(a.annotations),
                a.starts_at,
                a.ends_at,
            )
            for a in self.session.scalars(stmt.order_by(Alert.updated_at.desc()).limit(500))
            if tuple(sorted(a.labels.items())) not in shown
        ]
        alerts = live + resolved
        return [a for a in alerts if state is None or a.state == state]
