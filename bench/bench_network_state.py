"""Resolving 1,000 ports' rules into every host's desired network state (the control plane's share).

SCALE SIMULATION: the ports, VMs and hosts are rows in the store (what the resolver reads); no
datapath runs (programming the kernel is the linux backend's benchmark). The code measured is the
production path: ``network.specs.host_state`` (what each ``network_sync`` carries) and
``network.sync.push`` (what one change costs: every concerned host's state, queued).

Setup: one tenant, 20 hosts, 10 networks (a /22 each), 1,000 VMs with one port each spread over
the hosts and networks, labels ``tier`` in web|app|db|cache|batch; 10 security groups of 10 rules,
each port in 2 groups; rules name remote label selectors, remote groups and CIDRs.

Peer: no Neutron runs on this machine. The baseline is the same resolution done port by port with
nothing shared between ports (``port_spec`` per port: each reads its tenant again), the way a
naive per-port resolver would work.

Run: .venv/bin/python bench/bench_network_state.py [--ports 1000] [--hosts 20]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import tempfile
import time

from common import load, machine
from sqlalchemy import select

from novacron.db.base import Database, new_id
from novacron.db.migrate import upgrade
from novacron.db.models import (
    VM,
    Host,
    IPAllocation,
    Network,
    Port,
    PortSecurityGroup,
    Project,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
    Tenant,
)
from novacron.network import ipam
from novacron.network.specs import Layout, Resolver, host_state, port_spec
from novacron.network.sync import push
from novacron.network.wire import to_dict

TIERS = ["web", "app", "db", "cache", "batch"]


def populate(db: Database, n_ports: int, n_hosts: int, rng: random.Random) -> list[str]:
    with db.session() as s:
        tenant = Tenant(id=new_id("tenant"), name="bench")
        s.add(tenant)
        s.flush()
        project = Project(id=new_id("project"), tenant_id=tenant.id, name="main")
        s.add(project)
        s.flush()
        hosts = [
            Host(
                id=new_id("host"),
                name=f"h{i:03d}",
                driver="simulated",
                accelerator="tcg",
                cpus=64,
                ram_mb=262144,
                underlay_ip=f"192.168.{i // 250}.{i % 250 + 1}",
            )
            for i in range(n_hosts)
        ]
        s.add_all(hosts)
        s.flush()
        subnets = []
        for i in range(10):
            net = Network(id=new_id("net"), project_id=project.id, tenant_id=tenant.id, name=f"n{i}")
            ipam.allocate_vni(s, net)
            cidr = ipaddress.ip_network(f"10.{i}.0.0/22")
            _, gateway, pools = ipam.check_subnet(str(cidr), None, None)
            subnet = Subnet(
                id=new_id("subnet"),
                network_id=net.id,
                project_id=project.id,
                tenant_id=tenant.id,
                name=f"s{i}",
                ip_version=4,
                cidr=str(cidr),
                gateway_ip=gateway,
                allocation_pools=pools,
                dns_servers=[],
                host_routes=[],
            )
            s.add(subnet)
            subnets.append((subnet, cidr))
        s.flush()
        groups = []
        for g in range(10):
            group = SecurityGroup(id=new_id("sg"), project_id=project.id, tenant_id=tenant.id, name=f"g{g}")
            s.add(group)
            groups.append(group)
        s.flush()
        for g, group in enumerate(groups):
            for r in range(10):
                kind = r % 3
                s.add(
                    SecurityGroupRule(
                        id=new_id("sgr"),
                        group_id=group.id,
                        tenant_id=tenant.id,
                        direction="ingress" if r < 8 else "egress",
                        protocol="tcp",
                        port_min=1000 + r,
                        port_max=1000 + r,
                        remote_labels={"tier": TIERS[(g + r) % 5]} if kind == 0 else None,
                        remote_group_id=groups[(g + r) % 10].id if kind == 1 else None,
                        remote_cidr=f"172.16.{r}.0/24" if kind == 2 else None,
                        sni_allow=[],
                    )
                )
        s.flush()
        vms, ports, allocs, members = [], [], [], []
        for i in range(n_ports):
            vm_id, port_id = new_id("vm"), new_id("port")
            subnet, cidr = subnets[i % 10]
            vms.append(
                VM(
                    id=vm_id,
                    project_id=project.id,
                    tenant_id=tenant.id,
                    name=f"vm{i}",
                    vcpus=1,
                    ram_mb=128,
                    disk_gb=1,
                    host_id=hosts[rng.randrange(n_hosts)].id,
                    labels={"tier": TIERS[i % 5]},
                )
            )
            ports.append(
                Port(
                    id=port_id,
                    network_id=subnet.network_id,
                    project_id=project.id,
                    tenant_id=tenant.id,
                    vm_id=vm_id,
                    mac=f"fa:16:3e:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                    device=ipam.device_name(port_id),
                )
            )
            allocs.append(
                IPAllocation(
                    subnet_id=subnet.id,
                    ip=str(cidr[i // 10 + 2]),
                    port_id=port_id,
                    network_id=subnet.network_id,
                )
            )
            for g in rng.sample(range(10), 2):
                members.append(PortSecurityGroup(port_id=port_id, group_id=groups[g].id))
        s.add_all(vms)
        s.flush()
        s.add_all(ports)
        s.flush()
        s.add_all([*allocs, *members])
        return [h.id for h in hosts]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ports", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/bench.db")
        upgrade(db)
        host_ids = populate(db, args.ports, args.hosts, random.Random(7))
        print(f"# {machine()}; {load()}")
        print(
            f"# {args.ports} ports, {args.hosts} hosts, 10 networks, 10 groups x 10 rules, 2 groups per port"
        )

        with db.read_session() as s:
            t0 = time.perf_counter()
            layout, resolver = Layout(s), Resolver(s)
            states = [host_state(s, h, layout=layout, resolver=resolver) for h in host_ids]
            all_hosts = time.perf_counter() - t0
            t0 = time.perf_counter()
            host_state(s, host_ids[0])
            one_host = time.perf_counter() - t0
        n_ports = sum(len(st.ports) for st in states)
        n_rules = sum(len(p.rules) for st in states for p in st.ports)
        cidrs = sum(len(r.remote_cidrs) for st in states for p in st.ports for r in p.rules)
        in_sets = sum(len(a.cidrs) for st in states for a in st.address_sets)
        n_sets = sum(len(st.address_sets) for st in states)
        wire_bytes = sum(len(json.dumps(to_dict(st))) for st in states)
        print(
            f"host_state for all {len(host_ids)} hosts: {all_hosts * 1000:.0f} ms "
            f"({n_ports} ports, {n_rules} resolved rules, {cidrs} CIDRs in rules, {n_sets} remote sets "
            f"holding {in_sets} addresses; {wire_bytes / 1e6:.1f} MB as JSON); "
            f"one host alone: {one_host * 1000:.0f} ms"
        )

        with db.read_session() as s:
            ports = list(s.scalars(select(Port)))
            sample = ports[:100]
            t0 = time.perf_counter()
            for p in sample:
                port_spec(s, p)
            naive = (time.perf_counter() - t0) / len(sample) * len(ports)
        print(
            f"baseline, port by port with nothing shared: {naive * 1000:.0f} ms for {len(ports)} ports "
            "(extrapolated from 100)"
        )

        with db.session() as s:
            t0 = time.perf_counter()
            queued = push(s, host_ids)
            s.flush()
            pushed = time.perf_counter() - t0
            s.rollback()
        print(
            f"push (one change concerning every host): {pushed * 1000:.0f} ms "
            f"for {len(queued)} network_sync operations"
        )


if __name__ == "__main__":
    main()
