"""Networks: tenant overlay networks (a VXLAN VNI each), and who may change a shared one.

External (provider) and shared networks are made by admins (``network:admin``) and are visible to
every tenant; only their owner changes or deletes them.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from sqlalchemy import select

from novacron import events
from novacron.compute.scope import resolve_project
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import Network, Subnet
from novacron.db.resolve import resolve, scoped
from novacron.errors import Conflict, FieldError, Forbidden, NameTaken
from novacron.identity.principal import Principal
from novacron.network import ipam, service
from novacron.network.sync import syncing
from novacron.quota import enforce as quota
from novacron.service import Service


def check_owner(principal: Principal, row: Network | Subnet, kind: str) -> None:
    """A shared or external network is visible to all, but only its owner (or an admin) changes it."""
    if not principal.is_global and row.tenant_id != principal.tenant_id:
        raise Forbidden(f"This {kind} belongs to another tenant; you may only use it.")


@dataclass(frozen=True)
class NewNetwork:
    """A network to create, as the caller asked for it (already checked for shape by the API)."""

    name: str
    project_id: str | None = None
    mtu: int = 1450
    external: bool = False
    physical_interface: str | None = None
    shared: bool = False


@dataclass(frozen=True)
class NetworkChange:
    """What an update changes; None leaves a field as it is."""

    name: str | None = None
    mtu: int | None = None


class NetworkService(Service):
    """Create, read, change and delete networks; a network in use stays."""

    def list(
        self,
        params: ListParams,
        *,
        name: str | None = None,
        project_id: str | None = None,
        external: bool | None = None,
    ) -> tuple[list[Network], str | None]:
        """One page of the networks the caller sees, filtered by the filters given."""
        stmt = scoped(select(Network), Network, self.principal)
        stmt = where_equal(
            stmt, (Network.name, name), (Network.project_id, project_id), (Network.external, external)
        )
        return paginate(self.session, stmt, Network, params)

    def get(self, ref: str) -> Network:
        """The network of this id or name, as the caller sees it."""
        return resolve(self.session, self.principal, Network, ref)

    def get_owned(self, ref: str) -> Network:
        """The network of this id or name, for a change by its owner."""
        network = self.get(ref)
        check_owner(self.principal, network, "network")
        return network

    def subnet_ids(self, network: Network) -> builtins.list[str]:
        """The ids of the network's subnets, oldest first."""
        stmt = select(Subnet.id).where(Subnet.network_id == network.id).order_by(Subnet.created_at)
        return list(self.session.scalars(stmt))

    def create(self, spec: NewNetwork) -> Network:
        """A new network with the next free VNI, charged to its project's quota."""
        for flag in ("external", "shared", "physical_interface"):
            if getattr(spec, flag) and not self.principal.can("network:admin"):
                raise service.refused(Forbidden, flag, "only administrators (network:admin) set this")
        project = resolve_project(self.session, self.principal, spec.project_id)
        self._check_name_free(project.id, spec.name)
        network = Network(
            id=new_id("net"),
            project_id=project.id,
            tenant_id=project.tenant_id,
            name=spec.name,
            mtu=spec.mtu,
            external=spec.external,
            physical_interface=spec.physical_interface,
            shared=spec.shared,
        )
        ipam.allocate_vni(self.session, network)
        quota.charge(self.session, self.principal, project, "network", network.id, {"networks": 1})
        self._publish("network.created", network, vni=network.vni)
        return network

    def update(self, network: Network, change: NetworkChange) -> Network:
        """Rename the network (unique in its project) or change its MTU."""
        with syncing(self.session, network.tenant_id):
            if change.name is not None and change.name != network.name:
                self._check_name_free(network.project_id, change.name)
                network.name = change.name
            if change.mtu is not None:
                network.mtu = change.mtu
            self.session.flush()
        return network

    def delete(self, network: Network) -> None:
        """Delete a network nothing uses, with its subnets."""
        users = service.users_of_network(self.session, network)
        if users:
            raise Conflict(
                f"Network '{network.name}' is in use by {', '.join(users)}; delete those first.",
                fields=[FieldError("network_id", "in use: " + ", ".join(users), part="")],
            )
        with syncing(self.session, network.tenant_id):
            self._publish("network.deleted", network)
            for subnet in self.session.scalars(select(Subnet).where(Subnet.network_id == network.id)):
                self.session.delete(subnet)
            self.session.flush()  # before the network's row, whose deletion would cascade to them unseen
            self.session.delete(network)
            quota.release(self.session, "network", network.id)

    def _check_name_free(self, project_id: str, name: str) -> None:
        stmt = select(Network.id).where(Network.project_id == project_id, Network.name == name)
        if self.session.scalar(stmt):
            raise NameTaken("network", name, "name")

    def _publish(self, event_type: str, network: Network, **extra: object) -> None:
        events.publish(
            self.session,
            event_type,
            "network",
            network.id,
            tenant_id=network.tenant_id,
            project_id=network.project_id,
            name=network.name,
            **extra,
        )
