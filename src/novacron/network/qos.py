"""QoS policies: bandwidth limits, a guaranteed rate and a DSCP mark for the ports that name them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from novacron.compute.scope import resolve_project
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import Port, QosPolicy
from novacron.db.resolve import resolve, scoped
from novacron.errors import Conflict, InvalidInput, NameTaken
from novacron.service import Service


@dataclass(frozen=True)
class NewQosPolicy:
    """A QoS policy to create (already checked for shape by the API); rates in kbit/s."""

    name: str
    project_id: str | None = None
    ingress_kbps: int | None = None
    egress_kbps: int | None = None
    guaranteed_kbps: int | None = None
    dscp: int | None = None


class QosService(Service):
    """Create, read and delete QoS policies; a policy a port names stays."""

    def list(self, params: ListParams, *, name: str | None = None) -> tuple[list[QosPolicy], str | None]:
        """One page of the policies the caller sees, optionally only those of this name."""
        stmt = scoped(select(QosPolicy), QosPolicy, self.principal)
        if name is not None:
            stmt = stmt.where(QosPolicy.name == name)
        return paginate(self.session, stmt, QosPolicy, params)

    def get(self, ref: str) -> QosPolicy:
        """The policy of this id or name, as the caller sees it."""
        return resolve(self.session, self.principal, QosPolicy, ref)

    def create(self, spec: NewQosPolicy) -> QosPolicy:
        """A new policy, unique by name in its project; its guarantee within its limits."""
        if spec.guaranteed_kbps is not None:
            for limit_name in ("egress_kbps", "ingress_kbps"):
                limit = getattr(spec, limit_name)
                if limit is not None and spec.guaranteed_kbps > limit:
                    reason = f"{spec.guaranteed_kbps} exceeds {limit_name} ({limit})"
                    raise InvalidInput("guaranteed_kbps", reason)
        project = resolve_project(self.session, self.principal, spec.project_id)
        stmt = select(QosPolicy.id).where(QosPolicy.project_id == project.id, QosPolicy.name == spec.name)
        if self.session.scalar(stmt):
            raise NameTaken("QoS policy", spec.name, "name")
        policy = QosPolicy(
            id=new_id("qos"),
            project_id=project.id,
            tenant_id=project.tenant_id,
            name=spec.name,
            ingress_kbps=spec.ingress_kbps,
            egress_kbps=spec.egress_kbps,
            guaranteed_kbps=spec.guaranteed_kbps,
            dscp=spec.dscp,
        )
        self.session.add(policy)
        self.session.flush()
        return policy

    def delete(self, policy: QosPolicy) -> None:
        """Delete a policy no port names."""
        users = list(self.session.scalars(select(Port.id).where(Port.qos_policy_id == policy.id).limit(10)))
        if users:
            raise Conflict(f"QoS policy '{policy.name}' is used by ports {', '.join(users)}.")
        self.session.delete(policy)
