"""Creating and deleting ports, shared by the ports API, routers, floating IPs and VM creates.

Errors name the request field they came from (``field`` is the prefix, e.g. ``body.networks.0``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from novacron.api.errors import invalid
from novacron.compute.scope import get_visible
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
from novacron.errors import DomainError, NotFound
from novacron.identity.principal import Principal
from novacron.network import ipam
from novacron.quota import enforce as quota
from novacron.quota.registry import CHARGED_PORT_OWNERS
from novacron.virt.nics import VNIC_TRAITS

DEFAULT_GROUP = "default"


@dataclass(frozen=True)
class FixedIPRequest:
    subnet: str | None = None
    ip: str | None = None


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
    session: Session, principal: Principal, ref: str, project: Project, field: str
) -> SecurityGroup:
    if ref == DEFAULT_GROUP:
        return default_group(session, project)
    try:
        group = get_visible(session, SecurityGroup, ref, principal, "security group")
    except DomainError as exc:
        raise invalid(field, f"no security group '{ref}' is visible to you") from exc
    if group.tenant_id != project.tenant_id:
        raise invalid(field, f"security group '{ref}' belongs to another tenant")
    return group


def find_network(session: Session, principal: Principal, ref: str, field: str) -> Network:
    try:
        return get_visible(session, Network, ref, principal, "network")
    except NotFound as exc:
        raise invalid(field, f"no network '{ref}' is visible to you; see GET /v1/networks") from exc


def find_qos(session: Session, principal: Principal, ref: str, field: str) -> QosPolicy:
    try:
        return get_visible(session, QosPolicy, ref, principal, "QoS policy")
    except DomainError as exc:
        raise invalid(field, f"no QoS policy '{ref}' is visible to you") from exc


def _allocate(
    session: Session, network: Network, port: Port, wanted: list[FixedIPRequest], field: str
) -> None:
    subnets = list(
        session.scalars(select(Subnet).where(Subnet.network_id == network.id).order_by(Subnet.created_at))
    )
    implicit = not wanted
    if implicit:  # one address from each subnet, as Neutron does
        wanted = [FixedIPRequest(subnet=s.id) for s in subnets]
    for i, req in enumerate(wanted):
        if field.startswith("body.networks") or implicit:
            # a VM's NIC names ``network`` and ``fixed_ip``; a port without fixed_ips its ``network``
            ip_field, subnet_field = f"{field}.fixed_ip", f"{field}.network"
        else:
            ip_field, subnet_field = f"{field}.fixed_ips.{i}.ip", f"{field}.fixed_ips.{i}.subnet"
        subnet: Subnet | None = None
        if req.subnet is not None:
            subnet = next((s for s in subnets if req.subnet in (s.id, s.name)), None)
            if subnet is None:
                raise invalid(subnet_field, f"network '{network.name}' has no subnet '{req.subnet}'")
        if req.ip is not None:
            try:
                addr = ipaddress.ip_address(req.ip)
            except ValueError as exc:
                raise invalid(ip_field, f"'{req.ip}' is not an IP address") from exc
            inside = [s for s in subnets if addr in ipaddress.ip_network(s.cidr)]
            if subnet is None and inside:
                subnet = inside[0]
            if subnet is None or subnet not in inside:
                raise invalid(ip_field, f"{addr} is in no subnet of network '{network.name}'")
        if subnet is None:
            raise invalid(subnet_field, "name a subnet or an ip")
        try:
            ipam.allocate(session, subnet, port.id, req.ip, gateway_ok=port.owner == "router_interface")
        except ValueError as exc:
            raise invalid(ip_field, str(exc)) from exc
        except ipam.Taken as exc:
            raise invalid(ip_field, str(exc), 409) from exc
        except ipam.Exhausted as exc:
            raise invalid(subnet_field, str(exc), 409) from exc


def create_port(
    session: Session,
    principal: Principal,
    project: Project,
    network: Network,
    *,
    field: str = "body",
    name: str = "",
    fixed_ips: list[FixedIPRequest] | None = None,
    security_groups: list[str] | None = None,
    port_security: bool = True,
    vnic_type: str = "normal",
    qos_policy: str | None = None,
    vm: VM | None = None,
    router: Router | None = None,
    owner: str = "compute",
    position: int = 0,
    charge: bool = True,
) -> Port:
    """A port with its addresses held and its groups set (the project's ``default`` when none named)."""
    if network.tenant_id != project.tenant_id and not (network.shared or network.external):
        raise invalid(f"{field}.network", f"network '{network.name}' belongs to another tenant")
    if network.external and owner == "compute" and not principal.can("network:admin"):
        raise invalid(
            f"{field}.network", f"'{network.name}' is an external network: only routers use it", 403
        )
    qos_id = find_qos(session, principal, qos_policy, f"{field}.qos_policy").id if qos_policy else None
    port_id = new_id("port")
    port = Port(
        id=port_id,
        network_id=network.id,
        project_id=project.id,
        tenant_id=project.tenant_id,
        name=name,
        owner=owner,
        vm_id=vm.id if vm is not None else None,
        router_id=router.id if router is not None else None,
        mac=ipam.new_mac(session, network.id),
        device=ipam.device_name(port_id),
        port_security=port_security if owner == "compute" else False,
        vnic_type=vnic_type,
        qos_policy_id=qos_id,
        position=position,
    )
    session.add(port)
    session.flush()
    if owner == "compute" and port_security:
        refs = security_groups if security_groups is not None else [DEFAULT_GROUP]
        seen: set[str] = set()
        for i, ref in enumerate(refs):
            group = find_group(session, principal, ref, project, f"{field}.security_groups.{i}")
            if group.id not in seen:
                seen.add(group.id)
                session.add(PortSecurityGroup(port_id=port.id, group_id=group.id))
    elif security_groups:
        raise invalid(f"{field}.security_groups", "a port without port security has no security groups")
    _allocate(session, network, port, fixed_ips or [], field)
    session.flush()
    if charge and owner in CHARGED_PORT_OWNERS:
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
    rows = session.execute(
        select(IPAllocation.subnet_id, IPAllocation.ip)
        .where(IPAllocation.port_id == port_id)
        .order_by(IPAllocation.subnet_id)
    )
    return [{"subnet_id": s, "ip": ip} for s, ip in rows]


def group_ids(session: Session, port_id: str) -> list[str]:
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
        field = f"body.networks.{i}"
        network = find_network(session, principal, nic.network, f"{field}.network")
        ports.append(
            create_port(
                session,
                principal,
                project,
                network,
                field=field,
                name=f"{vm.name}-{i}",
                fixed_ips=[FixedIPRequest(ip=nic.fixed_ip)] if nic.fixed_ip else None,
                security_groups=list(nic.security_groups) if nic.security_groups is not None else None,
                vnic_type=nic.vnic_type,
                qos_policy=nic.qos_policy,
                vm=vm,
                position=i,
                charge=False,
            )
        )
    for port in ports:  # every address first, then the counters (see charge_port)
        charge_port(session, principal, project, port)
    return ports


def delete_vm_ports(session: Session, vm_id: str) -> None:
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
