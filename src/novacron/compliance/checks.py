"""The automated checks: each reads the platform's real tables, files and settings and says pass,
fail or not applicable, with the evidence it looked at (what, and the values found).

A check runs for one tenant (``Scope.tenant_id``: that tenant's rows only) or for the platform
(None: every tenant's rows, and the platform's own accounts and keys). Platform-wide facts (the API
listener, the audit chain, the JWT signing key, the KEK) are part of every tenant's run too: its
data depends on them. Thresholds are module constants, named in the evidence they judge.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from argon2 import Type
from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import Session

from novacron.db.models import Image, LbListener, SecurityGroup, SecurityGroupRule, Tenant, User
from novacron.identity import passwords
from novacron.identity.mfa_policy import ADMIN_ROLES, enrolled, policy_of

if TYPE_CHECKING:
    from novacron.context import Context

PASS, FAIL, NA = "pass", "fail", "not_applicable"
#: ports whose service must never face the whole internet (SSH, RDP, databases, Docker, VNC, ...)
ADMIN_PORTS = (22, 23, 2375, 3306, 3389, 5432, 5900, 6379, 9200, 11211, 27017)
ANYWHERE = ("0.0.0.0/0", "::/0")
DORMANT_DAYS = 90
#: listing sizes in the evidence: enough to act on, bounded for a big tenant
_SAMPLE = 50


@dataclass(frozen=True)
class Scope:
    """What a run looks at: one tenant or (None) the platform, in one read transaction."""

    session: Session
    ctx: Context
    tenant_id: str | None
    now: datetime

    def owned(self, column: Any) -> ColumnElement[bool]:
        """A filter on a model's ``tenant_id`` column: the scope's tenant, or every row."""
        return true() if self.tenant_id is None else column == self.tenant_id


@dataclass(frozen=True)
class Outcome:
    status: str
    summary: str
    evidence: dict[str, Any]


def outcome(failures: Sequence[object], ok: str, bad: str, evidence: dict[str, Any]) -> Outcome:
    """Pass with ``ok``, or fail with ``bad`` (formatted with the count) when there are failures."""
    if failures:
        return Outcome(FAIL, bad.format(n=len(failures)), evidence)
    return Outcome(PASS, ok, evidence)


def _tenants(scope: Scope) -> list[Tenant]:
    return list(scope.session.scalars(select(Tenant).where(scope.owned(Tenant.id)).order_by(Tenant.name)))


# -- access ----------------------------------------------------------------------------------------


def mfa_admins(scope: Scope) -> Outcome:
    """Every tenant requires a second factor of its admins, and every active admin has one
    (platform scope: the platform administrators too)."""
    s = scope.session
    tenants, failures = [], []
    for t in _tenants(scope):
        policy = policy_of(s, t.id)
        if policy == "none":
            failures.append(f"tenant {t.name}: no second-factor policy")
        tenants.append({"tenant": t.name, "policy": policy})
    admins = select(User).where(User.role.in_(ADMIN_ROLES), User.disabled.is_(False))
    if scope.tenant_id is not None:
        admins = admins.where(User.tenant_id == scope.tenant_id)
    accounts = []
    for u in s.scalars(admins.order_by(User.username)):
        has = enrolled(s, u.id)
        accounts.append({"user": u.username, "tenant_id": u.tenant_id, "role": u.role, "mfa": has})
        if not has:
            failures.append(f"admin {u.username} has no second factor")
    evidence = {"looked_at": "tenant_mfa_policies, users, mfa_totp, mfa_passkeys", "tenants": tenants}
    evidence |= {"admins": accounts[:_SAMPLE], "failures": failures[:_SAMPLE]}
    return outcome(failures, "admins are required to use, and use, a second factor", "{n} MFA gaps", evidence)


def password_policy(scope: Scope) -> Outcome:
    """The policy in force (length, strength, breached list) and every account's hash is argon2id."""
    hasher = passwords._hasher
    policy = {
        "min_length": passwords.MIN_LENGTH,
        "max_length": passwords.MAX_LENGTH,
        "min_zxcvbn_score": passwords.MIN_SCORE,
        "breached_list_size": len(passwords._breached()),
        "hash": {
            "type": hasher.type.name.lower(),
            "memory_kib": hasher.memory_cost,
            "time_cost": hasher.time_cost,
        },
    }
    failures = []
    if passwords.MIN_LENGTH < 12:
        failures.append(f"minimum length {passwords.MIN_LENGTH} < 12")
    if passwords.MIN_SCORE < 3:
        failures.append(f"minimum strength score {passwords.MIN_SCORE} < 3")
    if not policy["breached_list_size"]:
        failures.append("no breached-password list")
    if hasher.type is not Type.ID:
        failures.append(f"password hash {hasher.type.name} is not argon2id")
    users = select(User.username, User.password_hash).where(scope.owned(User.tenant_id))
    weak = [name for name, h in scope.session.execute(users) if not (h or "").startswith("$argon2id$")]
    failures += [f"user {name}: password not hashed with argon2id" for name in weak]
    evidence = {"looked_at": "identity/passwords.py policy, users.password_hash", "policy": policy}
    evidence["users_not_argon2id"] = weak[:_SAMPLE]
    evidence["failures"] = failures[:_SAMPLE]
    return outcome(
        failures, "password policy NIST 800-63B; every hash argon2id", "{n} password gaps", evidence
    )


def dormant_accounts(scope: Scope) -> Outcome:
    """Enabled accounts without a login (token issued) for ``DORMANT_DAYS`` days."""
    cutoff = scope.now - timedelta(days=DORMANT_DAYS)
    users = select(User).where(User.disabled.is_(False), scope.owned(User.tenant_id))
    dormant = []
    for u in scope.session.scalars(users.order_by(User.username)):
        seen = u.last_login_at or u.created_at
        if seen < cutoff:
            last = u.last_login_at.isoformat() if u.last_login_at else None
            dormant.append({"user": u.username, "tenant_id": u.tenant_id, "last_login_at": last})
    evidence = {"looked_at": "users.last_login_at (or created_at)", "max_days": DORMANT_DAYS}
    evidence |= {"cutoff": cutoff.isoformat(), "dormant": dormant[:_SAMPLE]}
    names = ", ".join(str(d["user"]) for d in dormant[:5])
    return outcome(dormant, "no dormant enabled account", f"{{n}} dormant accounts: {names}", evidence)


# -- exposure --------------------------------------------------------------------------------------


def _covers_admin_port(rule: SecurityGroupRule) -> list[int]:
    if rule.protocol not in (None, "tcp", "udp"):
        return []
    low, high = rule.port_min or 1, rule.port_max or rule.port_min or 65535
    if rule.port_min is None:
        high = 65535
    return [p for p in ADMIN_PORTS if low <= p <= high]


def _anywhere(rule: SecurityGroupRule) -> bool:
    if rule.remote_group_id or rule.remote_labels:
        return False
    if rule.remote_cidr is None:
        return True
    try:
        return ipaddress.ip_network(rule.remote_cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def open_security_groups(scope: Scope) -> Outcome:
    """Ingress rules that allow the whole internet (0.0.0.0/0, ::/0) to an admin port."""
    rules = (
        select(SecurityGroupRule, SecurityGroup.name)
        .join(SecurityGroup, SecurityGroup.id == SecurityGroupRule.group_id)
        .where(SecurityGroupRule.direction == "ingress", SecurityGroupRule.action == "allow")
        .where(scope.owned(SecurityGroupRule.tenant_id))
    )
    checked, open_ = 0, []
    for rule, group in scope.session.execute(rules):
        checked += 1
        ports = _covers_admin_port(rule)
        if ports and _anywhere(rule):
            open_.append(
                {
                    "rule_id": rule.id,
                    "group": group,
                    "group_id": rule.group_id,
                    "protocol": rule.protocol or "any",
                    "ports": f"{rule.port_min or 1}-{rule.port_max or rule.port_min or 65535}",
                    "remote": rule.remote_cidr or "any",
                    "admin_ports": ports,
                }
            )
    evidence = {"looked_at": "security_group_rules (ingress, allow)", "rules_checked": checked}
    evidence |= {"admin_ports": list(ADMIN_PORTS), "open": open_[:_SAMPLE]}
    named = ", ".join(f"{o['rule_id']} ({o['group']} port {o['admin_ports'][0]})" for o in open_[:5])
    return outcome(open_, "no admin port open to the internet", f"{{n}} open rules: {named}", evidence)


def public_images(scope: Scope) -> Outcome:
    """Images visible to every tenant: each one is listed and fails until it is made private."""
    rows = scope.session.scalars(
        select(Image).where(Image.public.is_(True), scope.owned(Image.tenant_id)).order_by(Image.name)
    )
    public = [
        {"image_id": i.id, "name": i.name, "tenant_id": i.tenant_id, "snapshot_of": i.snapshot_of}
        for i in rows
    ]
    total = len(list(scope.session.scalars(select(Image.id).where(scope.owned(Image.tenant_id)))))
    evidence = {"looked_at": "images.public", "images_checked": total, "public": public[:_SAMPLE]}
    names = ", ".join(str(p["name"]) for p in public[:5])
    return outcome(public, "no image is public", f"{{n}} public images: {names}", evidence)


def tls_listeners(scope: Scope) -> Outcome:
    """The API listener serves TLS (operator's or the platform CA's certificate, not expired),
    the agents' listener always does, and no load-balancer listener serves plain HTTP."""
    settings = scope.ctx.settings
    failures: list[str] = []
    api: dict[str, Any] = {"host": settings.listen_host, "port": settings.listen_port}
    api["tls"] = not settings.plain_http
    api["certificate"] = "operator" if settings.tls_cert else "platform CA"
    if settings.plain_http:
        failures.append(f"API listener {settings.listen_host}:{settings.listen_port} serves plain HTTP")
    if settings.tls_cert is not None:
        failures += _cert_expiry(settings.tls_cert, scope.now, api)
    listeners = []
    rows = select(LbListener).where(scope.owned(LbListener.tenant_id)).order_by(LbListener.name)
    for lst in scope.session.scalars(rows):
        redirects = any(
            p.get("action") == "REDIRECT_TO_URL" and str(p.get("redirect_url", "")).startswith("https:")
            for p in lst.l7policies or []
        )
        tls = lst.protocol in ("HTTPS", "TERMINATED_HTTPS")
        listeners.append(
            {
                "listener_id": lst.id,
                "name": lst.name,
                "protocol": lst.protocol,
                "port": lst.protocol_port,
                "tls": tls,
                "redirects_to_https": redirects,
            }
        )
        if lst.protocol == "HTTP" and not redirects:
            failures.append(
                f"load-balancer listener {lst.name or lst.id} ({lst.id}) "
                f"serves plain HTTP on {lst.protocol_port}"
            )
    evidence: dict[str, Any] = {"looked_at": "API listener settings, agent listener, lb_listeners"}
    evidence["api_listener"] = api
    evidence |= {
        "agent_listener": {"port": settings.agent_port, "tls": True} if settings.agent_port else None
    }
    evidence |= {"lb_listeners": listeners[:_SAMPLE], "failures": failures[:_SAMPLE]}
    return outcome(
        failures,
        "every listener serves TLS",
        "{n} listeners without TLS: " + "; ".join(failures[:3]),
        evidence,
    )


def _cert_expiry(path: Any, now: datetime, into: dict[str, Any]) -> list[str]:
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        return [f"API certificate {path} does not load: {exc}"]
    into["not_after"] = cert.not_valid_after_utc.isoformat()
    return [f"API certificate {path} expired {into['not_after']}"] if cert.not_valid_after_utc < now else []


CheckFn = Callable[[Scope], Outcome]
