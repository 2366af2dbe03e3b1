"""A fresh database with tenants, networks, subnets and ports for the network unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from novacron.db.base import Database, new_id
from novacron.db.models import Network, Port, Project, Subnet, Tenant
from novacron.network import ipam


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/nc.db")
    database.create_all()
    yield database


def make_network(s: Session) -> Network:
    tenant = Tenant(id=new_id("tenant"), name=new_id("t"))
    s.add(tenant)
    s.flush()
    project = Project(id=new_id("project"), tenant_id=tenant.id, name="p")
    s.add(project)
    s.flush()
    net = Network(id=new_id("net"), project_id=project.id, tenant_id=tenant.id, name=new_id("n"))
    ipam.allocate_vni(s, net)
    return net


def make_subnet(s: Session, net: Network, cidr: str, pools: list[tuple[str, str]] | None = None) -> Subnet:
    parsed, gateway, checked = ipam.check_subnet(cidr, None, pools)
    subnet = Subnet(
        id=new_id("subnet"),
        network_id=net.id,
        project_id=net.project_id,
        tenant_id=net.tenant_id,
        name=new_id("s"),
        ip_version=parsed.version,
        cidr=str(parsed),
        gateway_ip=gateway,
        allocation_pools=checked,
        dns_servers=[],
        host_routes=[],
    )
    s.add(subnet)
    s.flush()
    return subnet


def make_port(s: Session, net: Network) -> Port:
    pid = new_id("port")
    port = Port(
        id=pid,
        network_id=net.id,
        project_id=net.project_id,
        tenant_id=net.tenant_id,
        mac=ipam.new_mac(s, net.id),
        device=ipam.device_name(pid),
    )
    s.add(port)
    s.flush()
    return port
