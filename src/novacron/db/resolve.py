"""Who sees what, and the one resolver of every reference a caller gives by id or by name.

``scoped`` decides what a caller may see; ``usable_in`` what a resource of a project may use (its
tenant's own, and the public images and the shared or external networks). ``resolve`` turns a
reference into one row: by id, else by a name that only one candidate has. The candidates are what
the caller sees and, when the reference is for a resource of a target project (a VM's image, a
port's network), only what can be used in that project, even for an administrator who sees every
tenant: another tenant's private image never shadows, and never stands in for, a public one. A name
that more than one candidate has is ``Ambiguous``, listing their ids; it never picks one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from novacron.db.models import (
    SLO,
    VM,
    Aggregate,
    AlertReceiver,
    AlertRule,
    BackupPolicy,
    BackupSnapshot,
    BackupTarget,
    CapacityReservation,
    Dashboard,
    DRRunbook,
    Flavor,
    FloatingIP,
    GslbName,
    Host,
    Image,
    LbCertificate,
    LoadBalancer,
    Network,
    PolicyRule,
    Port,
    Probe,
    Project,
    QosPolicy,
    Router,
    ScalingGroup,
    SecurityGroup,
    ServerGroup,
    Subnet,
    Task,
    Tenant,
    Volume,
    VolumeSnapshot,
    WebhookSubscription,
)
from novacron.errors import Ambiguous, DomainError, InvalidInput, NotFound, on_field
from novacron.identity.principal import Principal

M = TypeVar("M")
#: the most candidates an ambiguity answer lists
MAX_CANDIDATES = 20


@dataclass(frozen=True)
class Kind:
    """How the platform names a kind of resource to its callers."""

    #: "image", "security group"
    label: str
    #: the path parameter its routes take (``image_id``): the field a path reference's refusal names
    path_param: str
    #: where the caller lists them (``/v1/images``)
    listing: str


KINDS: dict[type[Any], Kind] = {
    Tenant: Kind("tenant", "tenant_id", "/v1/tenants"),
    Project: Kind("project", "project_id", "/v1/projects"),
    VM: Kind("vm", "vm_id", "/v1/vms"),
    Image: Kind("image", "image_id", "/v1/images"),
    Flavor: Kind("flavor", "flavor_id", "/v1/flavors"),
    Host: Kind("host", "host_id", "/v1/hosts"),
    Aggregate: Kind("aggregate", "aggregate_id", "/v1/aggregates"),
    ServerGroup: Kind("server group", "group_id", "/v1/server-groups"),
    Volume: Kind("volume", "volume_id", "/v1/volumes"),
    VolumeSnapshot: Kind("volume snapshot", "snapshot_id", "/v1/volume-snapshots"),
    Network: Kind("network", "network_id", "/v1/networks"),
    Subnet: Kind("subnet", "subnet_id", "/v1/subnets"),
    Port: Kind("port", "port_id", "/v1/ports"),
    SecurityGroup: Kind("security group", "group_id", "/v1/security-groups"),
    QosPolicy: Kind("QoS policy", "policy_id", "/v1/qos-policies"),
    Router: Kind("router", "router_id", "/v1/routers"),
    LoadBalancer: Kind("load balancer", "loadbalancer_id", "/v1/loadbalancers"),
    FloatingIP: Kind("floating IP", "fip_id", "/v1/floating-ips"),
    BackupTarget: Kind("backup target", "target_id", "/v1/backup-targets"),
    BackupPolicy: Kind("backup policy", "policy_id", "/v1/backup-policies"),
    BackupSnapshot: Kind("backup", "backup_id", "/v1/backups"),
    DRRunbook: Kind("runbook", "runbook_id", "/v1/dr/runbooks"),
    CapacityReservation: Kind("reservation", "reservation_id", "/v1/reservations"),
    PolicyRule: Kind("policy rule", "rule_id", "/v1/policy-rules"),
    Task: Kind("task", "task_id", "/v1/tasks"),
    AlertRule: Kind("alert rule", "rule_id", "/v1/alert-rules"),
    AlertReceiver: Kind("alert receiver", "receiver_id", "/v1/alert-receivers"),
    WebhookSubscription: Kind("webhook", "webhook_id", "/v1/webhooks"),
    Probe: Kind("probe", "probe_id", "/v1/probes"),
    SLO: Kind("SLO", "slo_id", "/v1/slos"),
    Dashboard: Kind("dashboard", "dashboard_id", "/v1/dashboards"),
    GslbName: Kind("global name", "name_id", "/v1/gslb/names"),
    LbCertificate: Kind("certificate", "certificate_id", "/v1/certificates"),
    ScalingGroup: Kind("scaling group", "group_id", "/v1/scaling-groups"),
}
#: kinds the platform defines for everyone (their names are unique): no tenant owns them
PLATFORM_KINDS = frozenset({Flavor, Host, Aggregate, BackupTarget, PolicyRule})
#: kinds that are one user's own: nobody else sees them, not even a platform administrator
USER_KINDS = frozenset({Dashboard})
#: kinds only the resources of their own project may use (a VM joins its project's server group)
PROJECT_KINDS = frozenset({ServerGroup})


@dataclass(frozen=True)
class Named:
    """Where a reference came in: the input field a refusal names (``networks.0.network``), the
    part of the request it is in, and the refusal when nothing matches (a body's 422 by default;
    ``NotFound`` where the API answers 404 on that field)."""

    field: str
    part: str = "body"
    missing: type[DomainError] = InvalidInput


def scoped(stmt: Select[Any], model: Any, principal: Principal) -> Select[Any]:
    """``stmt`` narrowed to the rows of ``model`` the caller may see."""
    if model in USER_KINDS:
        return stmt.where(model.user_id == principal.user_id)
    if principal.is_global or model in PLATFORM_KINDS:
        return stmt
    return _usable_by_tenant(stmt, model, principal.tenant_id)


def usable_in(stmt: Select[Any], model: Any, project: Project) -> Select[Any]:
    """``stmt`` narrowed to the rows of ``model`` a resource of ``project`` may use."""
    if model in PLATFORM_KINDS:
        return stmt
    if model in PROJECT_KINDS:
        return stmt.where(model.project_id == project.id)
    return _usable_by_tenant(stmt, model, project.tenant_id)


def _usable_by_tenant(stmt: Select[Any], model: Any, tenant_id: str | None) -> Select[Any]:
    if model is Tenant:
        return stmt.where(Tenant.id == tenant_id)
    if model is Image:
        return stmt.where(or_(Image.tenant_id == tenant_id, Image.public.is_(True)))
    if model is Network:  # shared and external networks are usable by every tenant
        shared = or_(Network.shared.is_(True), Network.external.is_(True))
        return stmt.where(or_(Network.tenant_id == tenant_id, shared))
    if model is Subnet:  # a subnet goes with its network
        return stmt.where(Subnet.network_id.in_(_usable_by_tenant(select(Network.id), Network, tenant_id)))
    return stmt.where(model.tenant_id == tenant_id)


def resolve(
    session: Session,
    principal: Principal,
    model: type[M],
    ref: str,
    *,
    project: Project | None = None,
    named: Named | None = None,
) -> M:
    """The one ``model`` that ``ref`` (an id, or a name) addresses among the candidates: what the
    caller sees, and only what a resource of ``project`` may use when one is given.

    ``named`` is the input field the reference came in; without it the reference is a path's and
    a miss is the plain ``NotFound`` (404). A name more than one candidate has is ``Ambiguous``.
    """
    table: Any = model
    candidates = scoped(select(model), model, principal)
    if project is not None:
        candidates = usable_in(candidates, model, project)
    row: M | None = session.scalar(candidates.where(table.id == ref))
    if row is not None:
        return row
    kind = KINDS[model]
    field = named or Named(kind.path_param, "path", NotFound)
    if not hasattr(model, "name"):  # tasks, floating IPs and backups go by id only
        raise _missing(kind, ref, field, project)
    rows: list[M] = list(
        session.scalars(candidates.where(table.name == ref).order_by(table.id).limit(MAX_CANDIDATES))
    )
    if len(rows) > 1:
        ids = [getattr(r, "id") for r in rows]  # noqa: B009 - the rows are of any kind
        raise Ambiguous(kind.label, ref, ids, field.field, part=field.part)
    if rows:
        return rows[0]
    raise _missing(kind, ref, field, project)


def _missing(kind: Kind, ref: str, named: Named, project: Project | None) -> DomainError:
    """The refusal of a reference that addresses nothing the caller may use."""
    if named.part == "path":
        return NotFound(kind.label, ref)
    usable = f" for use in project '{project.name}'" if project is not None else ""
    reason = f"no {kind.label} '{ref}' is visible to you{usable}; see GET {kind.listing}"
    return on_field(named.missing, named.field, reason, part=named.part)
