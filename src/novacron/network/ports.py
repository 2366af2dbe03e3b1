"""Ports through the API: NICs on a network with their addresses, security groups, QoS policy and
vNIC type. A VM's ports are made with the VM and go with it; ports made here are unbound until
attached. The rows are made and removed by ``network/service.py``, shared with VMs and routers.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from novacron import events
from novacron.compute.scope import resolve_project
from novacron.db.base import utcnow
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import VM, Port, PortSecurityGroup, Project
from novacron.db.resolve import resolve, scoped
from novacron.errors import Conflict
from novacron.network import service
from novacron.network.specs import port_spec
from novacron.network.sync import syncing
from novacron.network.wire import to_dict
from novacron.service import Service


@dataclass(frozen=True)
class PortChange:
    """What an update changes; None leaves a field as it is (``qos_policy=""`` removes the policy)."""

    name: str | None = None
    security_groups: list[str] | None = None
    qos_policy: str | None = None


@dataclass(frozen=True)
class PortDetails:
    """What a port's answer shows beyond its row: its host and the rows naming it."""

    host_id: str | None
    fixed_ips: list[dict[str, str]]
    security_groups: list[str]


class PortService(Service):
    """Create, read, change and delete the ports the caller sees; a VM's or a router's stay theirs."""

    def list(
        self,
        params: ListParams,
        *,
        network_id: str | None = None,
        vm_id: str | None = None,
        project_id: str | None = None,
    ) -> tuple[list[Port], str | None]:
        """One page of the ports the caller sees, filtered by the filters given."""
        stmt = scoped(select(Port), Port, self.principal)
        stmt = where_equal(
            stmt, (Port.network_id, network_id), (Port.vm_id, vm_id), (Port.project_id, project_id)
        )
        return paginate(self.session, stmt, Port, params)

    def get(self, ref: str) -> Port:
        """The port of this id or name, as the caller sees it."""
        return resolve(self.session, self.principal, Port, ref)

    def details(self, port: Port) -> PortDetails:
        """The port's host (its VM's, when bound to one), addresses and security groups."""
        host = port.host_id
        if port.vm_id is not None:
            host = self.session.scalar(select(VM.host_id).where(VM.id == port.vm_id))
        return PortDetails(
            host_id=host,
            fixed_ips=service.fixed_ips(self.session, port.id),
            security_groups=service.group_ids(self.session, port.id),
        )

    def datapath_spec(self, ref: str) -> dict[str, Any]:
        """The port as its host's datapath gets it: rules resolved to the current member addresses."""
        return to_dict(port_spec(self.session, self.get(ref)))

    def create(self, network_ref: str, project_id: str | None, port: service.NewPort) -> Port:
        """A new port of ``project_id``'s (the caller's one project by default) on a network it sees."""
        project = resolve_project(self.session, self.principal, project_id)
        network = service.find_network(self.session, self.principal, network_ref, "network", project)
        with syncing(self.session, project.tenant_id):
            row = service.create_port(self.session, self.principal, project, network, port)
            self._publish("port.created", row)
        return row

    def update(self, port: Port, change: PortChange) -> Port:
        """Rename the port, set or remove its QoS policy, replace its security groups."""
        project = self.session.get(Project, port.project_id)
        assert project is not None
        with syncing(self.session, port.tenant_id):
            if change.name is not None:
                port.name = change.name
            if change.qos_policy is not None:
                port.qos_policy_id = self._qos(project, change.qos_policy) if change.qos_policy else None
            if change.security_groups is not None:
                self._set_groups(port, project, change.security_groups)
            self.session.flush()
        return port

    def delete(self, port: Port) -> None:
        """Delete a port made here (a VM's goes with the VM, a router's with the router's leg)."""
        if port.vm_id is not None:
            raise Conflict(f"Port {port.id} is VM {port.vm_id}'s NIC; it goes when the VM is deleted.")
        if port.owner != "compute":
            raise Conflict(f"Port {port.id} belongs to a {port.owner}; remove it there.")
        with syncing(self.session, port.tenant_id):
            self._publish("port.deleted", port)
            service.delete_port(self.session, port)

    def _qos(self, project: Project, ref: str) -> str:
        return service.find_qos(self.session, self.principal, ref, project, "qos_policy").id

    def _set_groups(self, port: Port, project: Project, refs: builtins.list[str]) -> None:
        if not port.port_security and refs:
            raise Conflict("A port without port security has no security groups.")
        groups = {
            service.find_group(self.session, self.principal, ref, project, f"security_groups.{i}").id
            for i, ref in enumerate(refs)
        }
        self.session.execute(delete(PortSecurityGroup).where(PortSecurityGroup.port_id == port.id))
        for group_id in sorted(groups):
            self.session.add(PortSecurityGroup(port_id=port.id, group_id=group_id))
        # membership lives in another table: touching the row moves its version (the ETag) on
        port.updated_at = utcnow()

    def _publish(self, event_type: str, port: Port) -> None:
        events.publish(
            self.session, event_type, "port", port.id, tenant_id=port.tenant_id, project_id=port.project_id
        )
