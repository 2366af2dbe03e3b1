"""Ports: creating and deleting them, shared by the ports API, routers, floating IPs, VM creates and DR.

Refusals name the input field they came from without the part of the request it is in
(``networks.0.fixed_ip``); ``NewPort.part`` says which part that is (``body`` for an API request,
empty for a runbook's ``network_map``), and the API adds it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from novacron.db.base import new_id
from novacron.db.models import (
    VM,
    FloatingIP,
    IPAllocation,
    Network,
    Port,
    PortSecurityGroup,
    Project,
    QosPolicy,
    Router,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
)
from novacron.db.resolve import Named, resolve
from novacron.errors import Conflict, DomainError, Forbidden, InvalidInput, on_field
from novacron.identity.principal import Principal
from novacron.network import ipam
from novacron.quota import enforce as quota
from novacron.quota.registry import CHARGED_PORT_OWNERS
from novacron.virt.nics import VNIC_TRAITS

DEFAULT_GROUP = "default"
ErrorT = TypeVar("ErrorT", bound=DomainError)


@dataclass(frozen=True)
class FixedIPRequest:
    """One address a port asks for: a subnet, an address, or both."""

    subnet: str | None = None
    ip: str | None = None


@dataclass(frozen=True)
class NewPort:
    """A port to create: what it is, whom it serves, and the input field its refusals name."""

    name: str = ""
    fixed_ips: tuple[FixedIPRequest, ...] = ()
    #: None: the project's ``default`` group
    security_groups: tuple[str, ...] | None = None
    port_security: bool = True
    vnic_type: str = "normal"
    qos_policy: str | None = None
    #: compute (a VM's or an unbound NIC), router_interface, router_gateway or floating_ip
    owner: str = "compute"
    vm_id: str | None = None
    router_id: str | None = None
    position: int = 0
    #: the input the port was asked for in (``networks.0``; empty: the whole input)
    field: str = ""
    part: str = "body"


def refused(cls: type[ErrorT], field: str, reason: str, part: str = "body") -> ErrorT:
    """A refusal of class ``cls`` about one input field, titled as a refused input whatever its
    status (a taken address is a 409 "Invalid request")."""
    return on_field(cls, field, reason, part=part, title=ipam.INVALID)


def at(prefix: str, name: str) -> str:
    """``name`` inside the input field ``prefix`` (the whole input when ``prefix`` is empty)."""
    return f"{prefix}.{name}" if prefix else name


def default_group(session: Session, project: Project) -> SecurityGroup:
    """The project's ``default`` group, made on first use: inbound from its own members, all outbound."""
    found = session.scalar(
        select(SecurityGroup).where(
            SecurityGroup.project_id == project.id, SecurityGroup.name == DEFAULT_GROUP
        )
    )
    if found is not None:
        return found
    group = SecurityGroup(
        id=new_id("sg"),
        project_id=project.id,
        tenant_id=project.tenant_id,
        name=DEFAULT_GROUP,
        description="inbound from members of this group only; all outbound",
    )
    try:
        with session.begin_nested():
            session.add(group)
            session.flush()
            for ethertype in ("IPv4", "IPv6"):
                for direction, remote in (("ingress", group.id), ("egress", None)):
                    session.add(
                        SecurityGroupRule(
                            id=new_id("sgr"),
                            group_id=group.id,
                            tenant_id=group.tenant_id,
                            direction=direction,
                            ethertype=ethertype,
                            remote_group_id=remote,
                            sni_allow=[],
                        )
                    )
    except IntegrityError:  # made by a concurrent request: use that one
        found = session.scalar(
            select(SecurityGroup).where(
                SecurityGroup.project_id == project.id, SecurityGroup.name == DEFAULT_GROUP
            )
        )
        assert found is not None
        return found
    return group


def find_group(
    session: Session, principal: Principal, ref: str, project: Project, field: str, part: str = "body"
) -> SecurityGroup:
    """The group ``ref`` (``default``: the project's) for a port of ``project``; refused on ``field``."""
    if ref == DEFAULT_GROUP:
        return default_group(session, project)
    return resolve(session, principal, SecurityGroup, ref, project=project, named=Named(field, part))


def find_network(
    session: Session, principal: Principal, ref: str, field: str, project: Project | None = None
) -> Network:
    """The network ``ref`` as the caller sees it (and one ``project`` may use, when given); refused
    on the body's ``field``."""
    return resolve(session, principal, Network, ref, project=project, named=Named(field))


def find_external(session: Session, principal: Principal, ref: str, field: str, project: Project) -> Network:
    """The external network ``ref`` (a router's gateway, a floating IP's pool) for a resource of
    ``project``; refused on ``field``."""
    network = find_network(session, principal, ref, field, project)
    if not network.external:
        raise InvalidInput(field, f"network '{network.name}' is not external")
    return network


def find_qos(
    session: Session, principal: Principal, ref: str, project: Project, field: str, part: str = "body"
) -> QosPolicy:
    """The QoS policy ``ref`` for a port of ``project``; refused on ``field``."""
    return resolve(session, principal, QosPolicy, ref, project=project, named=Named(field, part))


def _address_fields(spec: NewPort, i: int, implicit: bool) -> tuple[str, str]:
    """The fields the ``i``th address's refusal names: (address, subnet)."""
    if spec.vm_id is not None or implicit:
        # a VM's NIC names ``network`` and ``fixed_ip``; a port without fixed_ips its ``network``
        return at(spec.field, "fixed_ip"), at(spec.field, "network")
    return at(spec.field, f"fixed_ips.{i}.ip"), at(spec.field, f"fixed_ips.{i}.subnet")


def _subnet_for(
    network: Network, subnets: list[Subnet], req: FixedIPRequest, fields: tuple[str, str], part: str
) -> Subnet:
    """The subnet an address request lands in: the one it names, or the one holding its address."""
    ip_field, subnet_field = fields
    subnet: Subnet | None = None
    if req.subnet is not None:
        subnet = next((s for s in subnets if req.subnet in (s.id, s.name)), None)
        if subnet is None:
            reason = f"network '{network.name}' has no subnet '{req.subnet}'"
            raise InvalidInput(subnet_field, reason, part=part)
    if req.ip is not None:
        try:
            addr = ipaddress.ip_address(req.ip)
        except ValueError as exc:
            raise InvalidInput(ip_field, f"'{req.ip}' is not an IP address", part=part) from exc
        inside = [s for s in subnets if addr in ipaddress.ip_network(s.cidr)]
        if subnet is None and inside:
            subnet = inside[0]
        if subnet is None or subnet not in inside:
            raise InvalidInput(ip_field, f"{addr} is in no subnet of network '{network.name}'", part=part)
    if subnet is None:
        raise InvalidInput(subnet_field, "name a subnet or an ip", part=part)
    return subnet


def _allocate(session: Session, network: Network, port: Port, spec: NewPort) -> None:
    subnets = list(
        session.scalars(select(Subnet).where(Subnet.network_id == network.id).order_by(Subnet.created_at))
    )
    wanted = list(spec.fixed_ips)
    implicit = not wanted
    if implicit:  # one address from each subnet, as Neutron does
        wanted = [FixedIPRequest(subnet=s.id) for s in subnets]
    for i, req in enumerate(wanted):
        ip_field, subnet_field = fields = _address_fields(spec, i, implicit)
        subnet = _subnet_for(network, subnets, req, fields, spec.part)
        try:
            ipam.allocate(session, subnet, port.id, req.ip, gateway_ok=port.owner == "router_interface")
        except ValueError as exc:
            raise InvalidInput(ip_field, str(exc), part=spec.part) from exc
        except ipam.Taken as exc:
            raise refused(Conflict, ip_field, str(exc), spec.part) from exc
        except ipam.Exhausted as exc:
            raise refused(Conflict, subnet_field, str(exc), spec.part) from exc


def _check_network(principal: Principal, project: Project, network: Network, spec: NewPort) -> None:
    """A port goes on the project's tenant's network, or a shared one; on an external one only a
    router's (or an administrator's)."""
    field = at(spec.field, "network")
    if network.tenant_id != project.tenant_id and not (network.shared or network.external):
        reason = f"network '{network.name}' belongs to another tenant"
        raise InvalidInput(field, reason, part=spec.part)
    if network.external and spec.owner == "compute" and not principal.can("network:admin"):
        reason = f"'{network.name}' is an external network: only routers use it"
        raise refused(Forbidden, field, reason, spec.part)


def _set_groups(session: Session, principal: Principal, project: Project, port: Port, spec: NewPort) -> None:
    """The port's security groups: those named (each once), the project's ``default`` when none is."""
    if spec.owner == "compute" and spec.port_security:
        refs = spec.security_groups if spec.security_groups is not None else (DEFAULT_GROUP,)
        seen: set[str] = set()
        for i, ref in enumerate(refs):
            field = at(spec.field, f"security_groups.{i}")
            group = find_group(session, principal, ref, project, field, spec.part)
            if group.id not in seen:
                seen.add(group.id)
                session.add(PortSecurityGroup(port_id=port.id, group_id=group.id))
    elif spec.security_groups:
        reason = "a port without port security has no security groups"
        raise InvalidInput(at(spec.field, "security_groups"), reason, part=spec.part)


def create_port(
    session: Session,
    principal: Principal,
    project: Project,
    network: Network,
    spec: NewPort,
    *,
    charge: bool = True,
) -> Port:
    """A port with its addresses held and its groups set (the project's ``default`` when none named)."""
    _check_network(principal, project, network, spec)
    qos_id = None
    if spec.qos_policy:
        qos_field = at(spec.field, "qos_policy")
        qos_id = find_qos(session, principal, spec.qos_policy, project, qos_field, spec.part).id
    port_id = new_id("port")
    port = Port(
        id=port_id,
        network_id=network.id,
        project_id=project.id,
        tenant_id=project.tenant_id,
        name=spec.name,
        owner=spec.owner,
        vm_id=spec.vm_id,
        router_id=spec.router_id,
        mac=ipam.new_mac(session, network.id),
        device=ipam.device_name(port_id),
        port_security=spec.port_security if spec.owner == "compute" else False,
        vnic_type=spec.vnic_type,
        qos_policy_id=qos_id,
        position=spec.position,
    )
    session.add(port)
    session.flush()
    _set_groups(session, principal, project, port, spec)
    _allocate(session, network, port, spec)
    session.flush()
    if charge and spec.owner in CHARGED_PORT_OWNERS:
        charge_port(session, principal, project, port)
    return port


def charge_port(session: Session, principal: Principal, project: Project, port: Port) -> None:
    """In the port's transaction (a refusal leaves no port), after its addresses: the counters stay
    locked until commit, and a transaction holding them must not then wait for an address another
    one holds (PostgreSQL would find a deadlock)."""
    quota.charge(session, principal, project, "port", port.id, {"ports": 1})


def delete_port(session: Session, port: Port) -> None:
    """The port and its addresses (released at once), and any floating IP pointing at it."""
    for fip in session.scalars(select(FloatingIP).where(FloatingIP.port_id == port.id)):
        fip.port_id = None
        fip.router_id = None
    session.execute(delete(PortSecurityGroup).where(PortSecurityGroup.port_id == port.id))
    session.execute(delete(IPAllocation).where(IPAllocation.port_id == port.id))
    session.delete(port)
    quota.release(session, "port", port.id)
    session.flush()


def fixed_ips(session: Session, port_id: str) -> list[dict[str, str]]:
    """The port's addresses, ``{"subnet_id", "ip"}`` each, by subnet."""
    rows = session.execute(
        select(IPAllocation.subnet_id, IPAllocation.ip)
        .where(IPAllocation.port_id == port_id)
        .order_by(IPAllocation.subnet_id)
    )
    return [{"subnet_id": s, "ip": ip} for s, ip in rows]


def group_ids(session: Session, port_id: str) -> list[str]:
    """The ids of the security groups the port names, sorted."""
    return list(
        session.scalars(
            select(PortSecurityGroup.group_id)
            .where(PortSecurityGroup.port_id == port_id)
            .order_by(PortSecurityGroup.group_id)
        )
    )


def users_of_network(session: Session, network: Network) -> list[str]:
    """What keeps a network from being deleted, for the 409's message."""
    out: list[str] = []
    for port in session.scalars(select(Port).where(Port.network_id == network.id).limit(20)):
        if port.vm_id:
            out.append(f"port {port.id} of VM {port.vm_id}")
        elif port.router_id:
            out.append(f"port {port.id} of router {port.router_id}")
        else:
            out.append(f"port {port.id} ({port.owner})")
    for router_id in session.scalars(select(Router.id).where(Router.external_network_id == network.id)):
        out.append(f"router {router_id} (gateway)")
    return out


@dataclass(frozen=True)
class NicRequest:
    """One entry of a VM create's ``networks``."""

    network: str
    fixed_ip: str | None = None
    security_groups: tuple[str, ...] | None = None
    vnic_type: str = "normal"
    qos_policy: str | None = None


def vm_traits(nics: list[NicRequest]) -> set[str]:
    """The host traits the VM's NICs need (the scheduler adds them to its required traits)."""
    return {VNIC_TRAITS[n.vnic_type] for n in nics if n.vnic_type in VNIC_TRAITS}


def create_vm_ports(
    session: Session, principal: Principal, project: Project, vm: VM, nics: list[NicRequest]
) -> list[Port]:
    """The VM's ports, in order, in the VM's own transaction (a refusal leaves neither)."""
    if len(nics) > 1:  # each port is charged on its own: refuse first with the usage before the VM
        user = principal.user_id if principal.kind == "user" else None
        quota.require_room(
            session, project, "ports", f"VM '{vm.name}' with {len(nics)} ports", len(nics), user
        )
    ports: list[Port] = []
    for i, nic in enumerate(nics):
        field = f"networks.{i}"
        network = find_network(session, principal, nic.network, f"{field}.network", project)
        spec = NewPort(
            name=f"{vm.name}-{i}",
            fixed_ips=(FixedIPRequest(ip=nic.fixed_ip),) if nic.fixed_ip else (),
            security_groups=nic.security_groups,
            vnic_type=nic.vnic_type,
            qos_policy=nic.qos_policy,
            vm_id=vm.id,
            position=i,
            field=field,
        )
        ports.append(create_port(session, principal, project, network, spec, charge=False))
    for port in ports:  # every address first, then the counters (see charge_port)
        charge_port(session, principal, project, port)
    return ports


def delete_vm_ports(session: Session, vm_id: str) -> None:
    """Delete every port of the VM (its NICs go with it)."""
    for port in session.scalars(select(Port).where(Port.vm_id == vm_id)):
        delete_port(session, port)


def nics_of(session: Session, vm_id: str) -> list[dict[str, str]]:
    """What the VM's QEMU needs per NIC, in order (``spec_payload``'s ``nics``)."""
    ports = session.scalars(select(Port).where(Port.vm_id == vm_id).order_by(Port.position, Port.created_at))
    return [
        {
            "port_id": p.id,
            "mac": p.mac,
            "device": p.device,
            "network_id": p.network_id,
            "vnic_type": p.vnic_type,
        }
        for p in ports
    ]
