"""Policy resolution and a host's desired state, from database rows to the datapath's specs."""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from novacron.db.base import Database, new_id
from novacron.db.models import (
    VM,
    Host,
    Network,
    Port,
    PortSecurityGroup,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
)
from novacron.network import ipam
from novacron.network.linux.firewall import compile_ruleset
from novacron.network.model import AddressSet, PortSpec, Rule
from novacron.network.specs import host_state, port_spec
from novacron.network.wire import HostState, from_dict, to_dict
from tests.unit.network_helpers import db, make_network, make_port, make_subnet

__all__ = ["db"]


def _host(s: Session, name: str, underlay: str, traits: list[str] | None = None) -> Host:
    host = Host(
        id=new_id("host"),
        name=name,
        driver="qemu",
        accelerator="tcg",
        cpus=4,
        ram_mb=4096,
        underlay_ip=underlay,
        traits=traits or [],
    )
    s.add(host)
    s.flush()
    return host


def _vm(s: Session, net: Network, subnet_id: str, host: Host, name: str, labels: dict[str, str]) -> Port:
    vm = VM(
        id=new_id("vm"),
        project_id=net.project_id,
        tenant_id=net.tenant_id,
        name=name,
        vcpus=1,
        ram_mb=128,
        disk_gb=1,
        host_id=host.id,
        labels=labels,
    )
    s.add(vm)
    s.flush()
    port = make_port(s, net)
    port.vm_id = vm.id
    subnet = s.get(Subnet, subnet_id)
    assert subnet is not None
    ipam.allocate(s, subnet, port.id)
    s.flush()
    return port


def _group(s: Session, net: Network, name: str, selector: dict[str, str] | None = None) -> SecurityGroup:
    group = SecurityGroup(
        id=new_id("sg"), project_id=net.project_id, tenant_id=net.tenant_id, name=name, selector=selector
    )
    s.add(group)
    s.flush()
    return group


def _rule(s: Session, group: SecurityGroup, **kw: object) -> None:
    s.add(
        SecurityGroupRule(
            id=new_id("sgr"),
            group_id=group.id,
            tenant_id=group.tenant_id,
            direction="ingress",
            sni_allow=[],
            **kw,
        )
    )
    s.flush()


def _ip(s: Session, port: Port) -> str:
    return f"{port_spec(s, port).fixed_ips[0].ip}/32"


def test_label_and_group_rules_resolve_to_member_addresses(db: Database) -> None:
    with db.session() as s:
        net = make_network(s)
        subnet = make_subnet(s, net, "10.0.0.0/24")
        h1, h2 = _host(s, "h1", "192.168.0.1"), _host(s, "h2", "192.168.0.2")
        web1 = _vm(s, net, subnet.id, h1, "web1", {"tier": "web"})
        web2 = _vm(s, net, subnet.id, h2, "web2", {"tier": "web", "env": "prod"})
        dbp = _vm(s, net, subnet.id, h1, "db1", {"tier": "db"})
        batch = _vm(s, net, subnet.id, h2, "batch", {"tier": "batch"})
        db_group = _group(s, net, "db")
        _rule(s, db_group, protocol="tcp", port_min=80, port_max=80, remote_labels={"tier": "web"})
        _rule(s, db_group, protocol="tcp", port_min=5432, port_max=5432, remote_labels={"tier": "nobody"})
        s.add(PortSecurityGroup(port_id=dbp.id, group_id=db_group.id))
        # a label policy: every tier=web VM gets it, and it admits ssh from its own members
        web_group = _group(s, net, "web-segment", selector={"tier": "web"})
        _rule(s, web_group, protocol="ssh", remote_group_id=web_group.id)
        s.flush()

        rules = port_spec(s, dbp).rules
        # the rule whose selector matches nobody matches nothing: it is dropped, never "anywhere"
        assert rules == (
            Rule("ingress", "IPv4", "tcp", 80, 80, remote_cidrs=tuple(sorted([_ip(s, web1), _ip(s, web2)]))),
        )
        web_rules = port_spec(s, web2).rules
        assert web_rules == (
            Rule("ingress", protocol="ssh", remote_cidrs=tuple(sorted([_ip(s, web1), _ip(s, web2)]))),
        )
        assert port_spec(s, batch).rules == ()

        # a label change moves a VM into the policy: the resolved rules follow at once
        vm = s.get(VM, batch.vm_id)
        assert vm is not None
        vm.labels = {"tier": "web"}
        s.flush()
        expected = tuple(sorted([_ip(s, web1), _ip(s, web2), _ip(s, batch)]))
        assert port_spec(s, dbp).rules[0].remote_cidrs == expected
        assert port_spec(s, batch).rules[0].remote_cidrs == expected

        # without port security nothing is filtered
        dbp.port_security = False
        s.flush()
        assert port_spec(s, dbp).rules == ()


def test_a_membership_change_rewrites_the_hosts_set_not_its_rules(db: Database) -> None:
    with db.session() as s:
        net = make_network(s)
        subnet = make_subnet(s, net, "10.0.0.0/24")
        h1 = _host(s, "h1", "192.168.0.1")
        web = _vm(s, net, subnet.id, h1, "web", {"tier": "web"})
        dbp = _vm(s, net, subnet.id, h1, "db", {"tier": "db"})
        batch = _vm(s, net, subnet.id, h1, "batch", {"tier": "batch"})
        group = _group(s, net, "db")
        _rule(s, group, protocol="tcp", port_min=5432, port_max=5432, remote_labels={"tier": "web"})
        s.add(PortSecurityGroup(port_id=dbp.id, group_id=group.id))
        s.flush()

        before = host_state(s, h1.id)
        (rule,) = next(p for p in before.ports if p.id == dbp.id).rules
        assert rule.remote_set and rule.remote_cidrs == ()
        assert before.address_sets == (AddressSet(rule.remote_set, "IPv4", (_ip(s, web),)),)

        vm = s.get(VM, batch.vm_id)
        assert vm is not None
        vm.labels = {"tier": "web"}
        s.flush()
        after = host_state(s, h1.id)
        # the ports (their firewall chains) are the same; only the set's members moved
        assert after.ports == before.ports
        assert after.address_sets == (
            AddressSet(rule.remote_set, "IPv4", tuple(sorted([_ip(s, web), _ip(s, batch)]))),
        )
        assert from_dict(HostState, json.loads(json.dumps(to_dict(after)))) == after

        old = compile_ruleset(before.ports, {}, {a.name: a for a in before.address_sets})
        new = compile_ruleset(after.ports, {}, {a.name: a for a in after.address_sets})
        batch_ip = _ip(s, batch).split("/")[0]
        assert new.skeleton == old.skeleton
        delta = new.delta(old)
        assert (
            delta is not None and f"flush set inet novacron {rule.remote_set}" in delta and batch_ip in delta
        )
        assert new.delta(new) == ""
        # a port change is more than the elements: the tables are replaced
        assert compile_ruleset(after.ports[:1], {}, {}).delta(new) is None


def test_host_state_peers_dhcp_and_wire_round_trip(db: Database) -> None:
    with db.session() as s:
        net = make_network(s)
        subnet = make_subnet(s, net, "10.0.0.0/24")
        h1, h2 = _host(s, "h1", "192.168.0.1"), _host(s, "h2", "192.168.0.2")
        h3 = _host(s, "h3", "192.168.0.3")
        a = _vm(s, net, subnet.id, h1, "a", {})
        b = _vm(s, net, subnet.id, h2, "b", {})
        other_net = make_network(s)
        make_subnet(s, other_net, "10.0.0.0/24")  # the same range in another tenant is fine

        one, two, three = host_state(s, h1.id), host_state(s, h2.id), host_state(s, h3.id)
        assert [p.id for p in one.ports] == [a.id] and [p.id for p in two.ports] == [b.id]
        assert [(n.network.id, n.peers, n.dhcp) for n in one.networks] == [(net.id, ("192.168.0.2",), True)]
        assert [(n.network.id, n.peers, n.dhcp) for n in two.networks] == [(net.id, ("192.168.0.1",), False)]
        assert {p.id for p in one.networks[0].leases} == {a.id, b.id}
        assert three.networks == () and three.ports == ()

        # a VM about to arrive on h3 is there in h3's state before its row moves
        arriving = host_state(s, h3.id, moving={b.vm_id or "": h3.id})
        assert [p.id for p in arriving.ports] == [b.id]

        # a network node takes DHCP and joins every network's VTEP mesh
        h3.traits = ["network-node"]
        s.flush()
        one, three = host_state(s, h1.id), host_state(s, h3.id)
        assert one.networks[0].dhcp is False and one.networks[0].peers == ("192.168.0.2", "192.168.0.3")
        assert three.networks[0].dhcp is True and three.ports == ()

        wire = json.loads(json.dumps(to_dict(one)))
        assert from_dict(HostState, wire) == one
        assert isinstance(from_dict(HostState, wire).ports[0], PortSpec)
