"""Alert rules and receivers as API resources: tenant-scoped, validated, sealed where secret.

A tenant's rules and receivers are its own; an administrator's without a tenant are the
platform's (rules over every series, receivers for those rules). A rule names the receivers its
alerts go to, which must be of the same owner. The engines pick changes up from the database
(``engines.AlertingStack``); a service only wakes the reconciler.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events, netguard
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import AlertReceiver, AlertRule, Tenant
from novacron.db.resolve import resolve, scoped
from novacron.errors import Conflict, FieldError, InvalidInput, NameTaken, NotFound
from novacron.identity.encryption import encryption_for
from novacron.identity.principal import Principal
from novacron.monitoring.alerting.amconfig import RoutedReceiver, render_config
from novacron.monitoring.alerting.engines import AMTOOL, VMALERT
from novacron.monitoring.alerting.notify import signing_secret_aad, webhook_url_aad
from novacron.monitoring.alerting.rules import (
    DURATION,
    ENFORCING,
    LABEL_NAME,
    SEVERITIES,
    RenderedRule,
    RuleSpec,
    build_expr,
    check_labels,
    render_rule_file,
    seconds,
)
from novacron.service import Service

M = TypeVar("M", AlertRule, AlertReceiver)
MATCH_OPS = ("=", "!=", "=~", "!~")


def owner_tenant(session: Session, principal: Principal, tenant_id: str | None) -> str | None:
    """Whose a new rule or receiver is: the caller's tenant; an administrator's choice, None
    (the platform's) when it names none."""
    if not principal.is_global:
        if tenant_id is not None and tenant_id != principal.tenant_id:
            raise _no_tenant(tenant_id)
        return principal.tenant_id
    if tenant_id is None:
        return None
    try:
        return resolve(session, principal, Tenant, tenant_id).id
    except NotFound:
        raise _no_tenant(tenant_id) from None


def owned_by(model: type[M], tenant_id: str | None) -> Any:
    """The filter of the rows of one owner (a tenant, or the platform: no tenant)."""
    return model.tenant_id.is_(None) if tenant_id is None else model.tenant_id == tenant_id


def _no_tenant(tenant_id: str) -> NotFound:
    missing = NotFound("tenant", tenant_id)
    missing.fields.append(FieldError("tenant_id", "no such tenant"))
    return missing


def check_matchers(matchers: list[dict[str, str]], field_name: str = "matchers") -> None:
    """Alertmanager matchers: a label name, an operator, a value (a valid regex for =~ and !~)."""
    for n, m in enumerate(matchers):
        if not LABEL_NAME.match(m.get("name", "")):
            raise InvalidInput(f"{field_name}.{n}.name", "not a label name")
        if m.get("op") not in MATCH_OPS:
            raise InvalidInput(f"{field_name}.{n}.op", f"one of {' '.join(MATCH_OPS)}")
        if m["op"] in ("=~", "!~"):
            try:
                re.compile(m.get("value", ""))
            except re.error as exc:
                raise InvalidInput(f"{field_name}.{n}.value", f"not a regular expression: {exc}") from exc


def dry_run(rule: RenderedRule) -> str | None:
    """What vmalert itself says is wrong with a rule (its ``-dryRun`` parse), or None."""
    binary = shutil.which(VMALERT)
    if binary is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rule.yml"
        path.write_text(render_rule_file([rule], 1.0))
        proc = subprocess.run(
            [binary, "-dryRun", f"-rule={path}", "-loggerLevel=ERROR"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    if proc.returncode == 0 and "fatal" not in proc.stderr:
        return None
    found = re.search(r"(bad prometheus expr.*|invalid .*)", proc.stderr)
    return (found.group(1) if found else proc.stderr.strip().splitlines()[-1])[:300]


def route_problem(receiver: RoutedReceiver) -> str | None:
    """What Alertmanager's own checker (``amtool check-config``) says is wrong with a receiver's
    route, or None: a route Alertmanager refuses would stop every later configuration change."""
    binary = shutil.which(AMTOOL)
    if binary is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alertmanager.yml"
        path.write_text(render_config([receiver], "http://127.0.0.1:1", "check"))
        proc = subprocess.run(
            [binary, "check-config", str(path)], capture_output=True, text=True, timeout=30, check=False
        )
    if proc.returncode == 0:
        return None
    found = re.search(r"FAILED: (.*)", proc.stdout + proc.stderr)
    return (found.group(1) if found else "refused by Alertmanager")[:300]


class _Owned(Service):
    """What rule and receiver services share: scoped reads, and waking the engines' reconciler."""

    model: type[Any]
    kind_name: str

    def _get(self, model: type[M], ref: str) -> M:
        return resolve(self.session, self.principal, model, ref)

    def _name_taken(self, model: type[M], tenant_id: str | None, name: str, kind: str) -> None:
        if self.session.scalar(select(model.id).where(owned_by(model, tenant_id), model.name == name)):
            raise NameTaken(kind, name, "name", scope="for this owner")

    def _wake(self) -> None:
        if self._ctx is not None and self._ctx.alerting is not None:
            self._ctx.alerting.wake()


class AlertRuleService(_Owned):
    """Create, read, enable or disable, and delete alert rules."""

    def list(self, params: ListParams, *, name: str | None = None) -> tuple[list[AlertRule], str | None]:
        """One page of the rules the caller sees."""
        stmt = where_equal(scoped(select(AlertRule), AlertRule, self.principal), (AlertRule.name, name))
        return paginate(self.session, stmt, AlertRule, params)

    def get(self, ref: str) -> AlertRule:
        """The rule of this id or name, if the caller sees it."""
        return self._get(AlertRule, ref)

    def create(self, spec: RuleSpec) -> AlertRule:
        """A new rule, checked field by field and then by vmalert's own parser."""
        tenant_id = owner_tenant(self.session, self.principal, spec.tenant_id)
        check_labels(spec.labels, spec.annotations, tenant=tenant_id is not None)
        if not DURATION.match(spec.for_):
            raise InvalidInput("for", "a duration like 0s, 30s or 5m")
        if spec.severity not in SEVERITIES:
            raise InvalidInput("severity", f"one of {', '.join(SEVERITIES)}")
        expr = build_expr(spec, tenant_id)
        if spec.kind == "burn_rate" and tenant_id is not None and self._store_engine() != ENFORCING:
            # the tenant's whole expression is scoped by extra_label, which only VictoriaMetrics applies
            raise InvalidInput("kind", f"burn_rate rules of tenants need the {ENFORCING} store")
        receiver_ids = [self._receiver(ref, tenant_id, n) for n, ref in enumerate(spec.receivers)]
        self._name_taken(AlertRule, tenant_id, spec.name, "alert rule")
        rule = AlertRule(
            id=new_id("alr"),
            tenant_id=tenant_id,
            name=spec.name,
            kind=spec.kind,
            spec=_spec_fields(spec),
            expr=expr,
            for_s=int(seconds(spec.for_)),
            severity=spec.severity,
            labels=dict(spec.labels),
            annotations=dict(spec.annotations),
            receiver_ids=sorted(set(receiver_ids)),
            enabled=spec.enabled,
        )
        rendered = RenderedRule(
            rule.id,
            tenant_id,
            rule.name,
            expr,
            rule.for_s,
            rule.severity,
            rule.labels,
            rule.annotations,
            rule.receiver_ids,
        )
        if (problem := dry_run(rendered)) is not None:
            raise InvalidInput("expr" if spec.kind == "burn_rate" else "metric", problem)
        self.session.add(rule)
        self.session.flush()
        events.publish(
            self.session, "alert-rule.created", "alert-rule", rule.id, tenant_id=tenant_id, name=rule.name
        )
        self._wake()
        return rule

    def set_enabled(self, rule: AlertRule, enabled: bool) -> AlertRule:
        """Turn a rule on or off: a disabled rule leaves the engines' files (its alerts resolve)
        and keeps its definition, so enabling it again evaluates it afresh."""
        if rule.enabled == enabled:
            return rule
        rule.enabled = enabled
        self.session.flush()
        events.publish(
            self.session,
            "alert-rule.updated",
            "alert-rule",
            rule.id,
            tenant_id=rule.tenant_id,
            name=rule.name,
            enabled=enabled,
        )
        self._wake()
        return rule

    def delete(self, rule: AlertRule) -> None:
        """Delete a rule; its alerts resolve."""
        events.publish(
            self.session,
            "alert-rule.deleted",
            "alert-rule",
            rule.id,
            tenant_id=rule.tenant_id,
            name=rule.name,
        )
        self.session.delete(rule)
        self._wake()

    def _store_engine(self) -> str:
        """The store the rules read: the running engines', else the one the settings name (a rule
        made while alerting is down must hold when it starts)."""
        if self._ctx is None:
            return ENFORCING
        if self._ctx.alerting is not None:
            return self._ctx.alerting.engine
        return self._ctx.settings.metrics_engine

    def _receiver(self, ref: str, tenant_id: str | None, n: int) -> str:
        row = self.session.scalar(
            select(AlertReceiver).where(
                (AlertReceiver.id == ref) | (AlertReceiver.name == ref),
                owned_by(AlertReceiver, tenant_id),
            )
        )
        if row is None:
            raise InvalidInput(f"receivers.{n}", f"no receiver '{ref}' of the rule's owner exists")
        return row.id


def _spec_fields(spec: RuleSpec) -> dict[str, Any]:
    """The kind's parameters as stored (and shown)."""
    fields = {
        "metric": spec.metric,
        "matchers": dict(spec.matchers),
        "function": spec.function,
        "window": spec.window,
        "op": spec.op,
        "value": spec.value,
        "expr": spec.expr,
    }
    return {k: v for k, v in fields.items() if v not in (None, {})}


@dataclass(frozen=True)
class ReceiverSpec:
    """A receiver and its notification policy, as the caller asked for it."""

    name: str
    kind: str
    url: str | None = None
    email_to: str | None = None
    #: the webhook's HMAC key; write-only
    signing_secret: str | None = None
    group_by: list[str] = field(default_factory=list)
    group_wait_s: int = 0
    group_interval_s: int = 60
    repeat_interval_s: int = 4 * 3600
    matchers: list[dict[str, str]] = field(default_factory=list)
    tenant_id: str | None = None


class AlertReceiverService(_Owned):
    """Create, read and delete receivers (and their notification policies)."""

    def list(self, params: ListParams, *, name: str | None = None) -> tuple[list[AlertReceiver], str | None]:
        """One page of the receivers the caller sees."""
        stmt = where_equal(
            scoped(select(AlertReceiver), AlertReceiver, self.principal), (AlertReceiver.name, name)
        )
        return paginate(self.session, stmt, AlertReceiver, params)

    def get(self, ref: str) -> AlertReceiver:
        """The receiver of this id or name, if the caller sees it."""
        return self._get(AlertReceiver, ref)

    def create(self, spec: ReceiverSpec) -> AlertReceiver:
        """A new receiver; a webhook's URL must pass the egress guard, its secret is sealed."""
        tenant_id = owner_tenant(self.session, self.principal, spec.tenant_id)
        self._check_target(spec)
        check_matchers(spec.matchers)
        for n, label in enumerate(spec.group_by):
            if label != "..." and not LABEL_NAME.match(label):
                raise InvalidInput(f"group_by.{n}", "not a label name")
        self._name_taken(AlertReceiver, tenant_id, spec.name, "alert receiver")
        receiver_id = new_id("arc")
        route = RoutedReceiver(
            receiver_id,
            tenant_id,
            spec.group_by,
            spec.group_wait_s,
            spec.group_interval_s,
            spec.repeat_interval_s,
            spec.matchers,
        )
        if (problem := route_problem(route)) is not None:
            raise InvalidInput("matchers", problem)
        enc = encryption_for(self.ctx.settings)
        secret = None
        if spec.signing_secret is not None:
            secret = enc.seal_text(spec.signing_secret, signing_secret_aad(receiver_id))
        webhook = spec.url if spec.kind == "webhook" else None
        receiver = AlertReceiver(
            id=receiver_id,
            tenant_id=tenant_id,
            name=spec.name,
            kind=spec.kind,
            url=enc.seal_text(webhook, webhook_url_aad(receiver_id)) if webhook else None,
            url_shown=netguard.safe_url(webhook) if webhook else None,
            email_to=spec.email_to if spec.kind == "email" else None,
            signing_secret=secret,
            group_by=list(spec.group_by),
            group_wait_s=spec.group_wait_s,
            group_interval_s=spec.group_interval_s,
            repeat_interval_s=spec.repeat_interval_s,
            matchers=[dict(m) for m in spec.matchers],
        )
        self.session.add(receiver)
        self.session.flush()
        events.publish(
            self.session,
            "alert-receiver.created",
            "alert-receiver",
            receiver.id,
            tenant_id=tenant_id,
            name=receiver.name,
            kind=receiver.kind,
        )
        self._wake()
        return receiver

    def delete(self, receiver: AlertReceiver) -> None:
        """Delete a receiver no rule sends to."""
        names = sorted(
            r.name for r in self._rules_of(receiver.tenant_id) if receiver.id in (r.receiver_ids or [])
        )
        if names:
            raise Conflict(
                f"Alert rules {', '.join(names)} send to this receiver; change or delete them first."
            )
        events.publish(
            self.session,
            "alert-receiver.deleted",
            "alert-receiver",
            receiver.id,
            tenant_id=receiver.tenant_id,
            name=receiver.name,
        )
        self.session.delete(receiver)
        self._wake()

    def _rules_of(self, tenant_id: str | None) -> Sequence[AlertRule]:
        return self.session.scalars(select(AlertRule).where(owned_by(AlertRule, tenant_id))).all()

    def _check_target(self, spec: ReceiverSpec) -> None:
        if spec.kind == "webhook":
            if spec.url is None:
                raise InvalidInput("url", "required for a webhook receiver")
            if spec.signing_secret is None:
                raise InvalidInput(
                    "signing_secret", "required for a webhook receiver (16 characters or more)"
                )
            try:
                netguard.check_url(spec.url, netguard.EgressPolicy.from_settings(self.ctx.settings))
            except netguard.EgressDenied as exc:
                raise InvalidInput("url", str(exc)) from exc
        elif spec.kind == "email":
            if spec.email_to is None:
                raise InvalidInput("email_to", "required for an email receiver")
            if not self.ctx.settings.smtp_host:
                # the node's setting, not an outage: the request cannot succeed until the operator acts
                raise InvalidInput(
                    "kind",
                    "email receivers need an SMTP server, and none is configured (the operator sets "
                    "NOVACRON_SMTP_HOST); use a webhook receiver meanwhile",
                )
        else:
            raise InvalidInput("kind", "webhook or email")
