"""``novacron network|subnet|port|router|floating-ip|security-group|qos-policy ...``."""

from __future__ import annotations

from typing import Any

import typer

from novacron.cli.client import Client
from novacron.cli.common import CURSOR, JSON, LIMIT, client_of, create_in_project, key_values
from novacron.cli.names import names_of
from novacron.cli.output import Column, ago, info, print_detail, print_list

network_app = typer.Typer(no_args_is_help=True)
subnet_app = typer.Typer(no_args_is_help=True)
port_app = typer.Typer(no_args_is_help=True)
router_app = typer.Typer(no_args_is_help=True)
fip_app = typer.Typer(no_args_is_help=True)
sg_app = typer.Typer(no_args_is_help=True)
qos_app = typer.Typer(no_args_is_help=True)

PROJECT = typer.Option(None, "--project", help="project name or id (default: your project)")

NETWORK_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("VNI", "vni"),
    ("MTU", "mtu"),
    ("EXTERNAL", "external"),
    ("SUBNETS", lambda n: len(n.get("subnets", []))),
    ("CREATED", lambda n: ago(n.get("created_at"))),
]
SUBNET_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("NETWORK", lambda s: s.get("network_name") or s.get("network_id")),
    ("CIDR", "cidr"),
    ("GATEWAY", "gateway_ip"),
    ("USED", "used_ips"),
    ("DHCP", "dhcp"),
]
PORT_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NETWORK", lambda p: p.get("network_name") or p.get("network_id")),
    ("VM", lambda p: p.get("vm_name") or p.get("vm_id")),
    ("OWNER", "owner"),
    ("MAC", "mac"),
    ("IPS", lambda p: ", ".join(f["ip"] for f in p.get("fixed_ips", []))),
    ("HOST", "host_id"),
    ("VNIC", "vnic_type"),
]
RULE_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("DIR", "direction"),
    ("ETHER", "ethertype"),
    ("PROTO", lambda r: r.get("protocol") or "any"),
    ("PORTS", lambda r: "" if r.get("port_min") is None else f"{r['port_min']}-{r['port_max']}"),
    (
        "REMOTE",
        lambda r: (
            r.get("remote_cidr")
            or r.get("remote_group_id")
            or ",".join(f"{k}={v}" for k, v in (r.get("remote_labels") or {}).items())
            or "any"
        ),
    ),
    ("SNI", lambda r: ",".join(r.get("sni_allow") or [])),
    ("ACTION", "action"),
]


def _one(client: Client, kind: str, ref: str) -> dict[str, Any]:
    found: dict[str, Any] = client.get(f"/v1/{kind}/{ref}")
    return found


# ---------------------------------------------------------------- networks


@network_app.command("create")
def network_create(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    mtu: int = typer.Option(1450, "--mtu", min=576, max=9000),
    external: bool = typer.Option(
        False, "--external", help="a provider network for router gateways (admins)"
    ),
    physical_interface: str | None = typer.Option(None, "--physical-interface", help="with --external"),
    shared: bool = typer.Option(False, "--shared", help="usable by every tenant (admins)"),
    project: str | None = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Create a network (a VXLAN segment of its own)."""
    body: dict[str, Any] = {"name": name, "mtu": mtu, "external": external, "shared": shared}
    if physical_interface:
        body["physical_interface"] = physical_interface
    print_detail(create_in_project(client_of(ctx), "/v1/networks", body, project), as_json=as_json)


@network_app.command("list")
def network_list(
    ctx: typer.Context, limit: int | None = LIMIT, cursor: str | None = CURSOR, as_json: bool = JSON
) -> None:
    """List the networks you can use."""
    page = client_of(ctx).list_all("/v1/networks", limit=limit, cursor=cursor)
    print_list(page, NETWORK_COLUMNS, as_json=as_json, empty="No networks.")


@network_app.command("show")
def network_show(ctx: typer.Context, network: str = typer.Argument(...), as_json: bool = JSON) -> None:
    """Show a network."""
    print_detail(_one(client_of(ctx), "networks", network), as_json=as_json)


@network_app.command("delete")
def network_delete(ctx: typer.Context, network: str = typer.Argument(...)) -> None:
    """Delete a network (refused while ports or routers use it)."""
    client = client_of(ctx)
    client.delete(f"/v1/networks/{_one(client, 'networks', network)['id']}")
    info(f"Deleted network {network}.")


# ---------------------------------------------------------------- subnets


@subnet_app.command("create")
def subnet_create(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    network: str = typer.Option(..., "--network", help="network name or id"),
    cidr: str = typer.Option(..., "--cidr", help="10.0.0.0/24 or fd00::/64"),
    gateway: str | None = typer.Option(None, "--gateway", help="default: the first address"),
    no_gateway: bool = typer.Option(False, "--no-gateway"),
    pool: list[str] = typer.Option([], "--pool", help="START-END, repeatable"),
    dns: list[str] = typer.Option([], "--dns", help="DNS server, repeatable"),
    route: list[str] = typer.Option([], "--route", help="DESTINATION=NEXTHOP, repeatable"),
    no_dhcp: bool = typer.Option(False, "--no-dhcp"),
    as_json: bool = JSON,
) -> None:
    """Add a subnet (IPv4 or IPv6) to a network."""
    body: dict[str, Any] = {"network": network, "name": name, "cidr": cidr, "dhcp": not no_dhcp}
    if gateway:
        body["gateway_ip"] = gateway
    if no_gateway:
        body["no_gateway"] = True
    if pool:
        pools = [p.split("-", 1) if "-" in p else [p, p] for p in pool]
        body["allocation_pools"] = [{"start": a, "end": b} for a, b in pools]
    if dns:
        body["dns_servers"] = dns
    if route:
        routes = key_values(route, "--route")
        body["host_routes"] = [{"destination": d, "nexthop": n} for d, n in routes.items()]
    print_detail(client_of(ctx).post("/v1/subnets", body), as_json=as_json)


@subnet_app.command("list")
def subnet_list(
    ctx: typer.Context,
    network: str | None = typer.Option(None, "--network", help="only this network's (name or id)"),
    limit: int | None = LIMIT,
    cursor: str | None = CURSOR,
    as_json: bool = JSON,
) -> None:
    """List subnets with their network's name."""
    client = client_of(ctx)
    network_id = _one(client, "networks", network)["id"] if network else None
    page = client.list_all("/v1/subnets", limit=limit, cursor=cursor, network_id=network_id)
    networks = {} if as_json else names_of(client, "/v1/networks")
    for s in page["items"]:
        s["network_name"] = networks.get(s["network_id"], s["network_id"])
    print_list(page, SUBNET_COLUMNS, as_json=as_json, empty="No subnets.")


@subnet_app.command("delete")
def subnet_delete(ctx: typer.Context, subnet: str = typer.Argument(...)) -> None:
    """Delete a subnet (refused while addresses are held in it)."""
    client = client_of(ctx)
    client.delete(f"/v1/subnets/{_one(client, 'subnets', subnet)['id']}")
    info(f"Deleted subnet {subnet}.")


# ---------------------------------------------------------------- ports


@port_app.command("list")
def port_list(
    ctx: typer.Context,
    network: str | None = typer.Option(None, "--network", help="only this network's (name or id)"),
    vm: str | None = typer.Option(None, "--vm", help="only this VM's (name or id)"),
    limit: int | None = LIMIT,
    cursor: str | None = CURSOR,
    as_json: bool = JSON,
) -> None:
    """List ports with their network's and VM's names."""
    client = client_of(ctx)
    network_id = _one(client, "networks", network)["id"] if network else None
    vm_id = _one(client, "vms", vm)["id"] if vm else None
    page = client.list_all("/v1/ports", limit=limit, cursor=cursor, network_id=network_id, vm_id=vm_id)
    if not as_json:
        networks, vms = names_of(client, "/v1/networks"), names_of(client, "/v1/vms")
        for p in page["items"]:
            p["network_name"] = networks.get(p["network_id"], p["network_id"])
            p["vm_name"] = vms.get(p.get("vm_id") or "", p.get("vm_id") or "")
    print_list(page, PORT_COLUMNS, as_json=as_json, empty="No ports.")


@port_app.command("show")
def port_show(
    ctx: typer.Context,
    port: str = typer.Argument(...),
    rules: bool = typer.Option(False, "--rules", help="the resolved rules its host enforces"),
    as_json: bool = JSON,
) -> None:
    """Show a port (with --rules: its security-group rules resolved to addresses)."""
    client = client_of(ctx)
    if rules:
        spec = client.get(f"/v1/ports/{port}/spec")
        if as_json:
            print_detail(spec, as_json=True)
            return
        rows = [{**r, "remote": ", ".join(r["remote_cidrs"]) or "any"} for r in spec["rules"]]
        columns: list[Column] = [c for c in RULE_COLUMNS if c[0] not in ("ID", "REMOTE")]
        print_list({"items": rows}, [*columns, ("REMOTE", "remote")], as_json=False, empty="No rules.")
        return
    print_detail(_one(client, "ports", port), as_json=as_json)


# ---------------------------------------------------------------- routers and floating IPs


@router_app.command("create")
def router_create(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    external_network: str | None = typer.Option(None, "--external-network", help="gateway network"),
    no_snat: bool = typer.Option(False, "--no-snat"),
    project: str | None = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Create a router."""
    body: dict[str, Any] = {"name": name, "snat": not no_snat}
    if external_network:
        body["external_network"] = external_network
    print_detail(create_in_project(client_of(ctx), "/v1/routers", body, project), as_json=as_json)


@router_app.command("add-interface")
def router_add_interface(
    ctx: typer.Context,
    router: str = typer.Argument(...),
    subnet: str = typer.Argument(...),
    as_json: bool = JSON,
) -> None:
    """Attach a subnet to a router (the router takes the subnet's gateway address)."""
    print_detail(client_of(ctx).post(f"/v1/routers/{router}/interfaces", {"subnet": subnet}), as_json=as_json)


@router_app.command("set-gateway")
def router_set_gateway(
    ctx: typer.Context,
    router: str = typer.Argument(...),
    network: str = typer.Argument(..., help="external network"),
    no_snat: bool = typer.Option(False, "--no-snat"),
    as_json: bool = JSON,
) -> None:
    """Set a router's external gateway (SNAT for the networks behind it)."""
    body = {"network": network, "snat": not no_snat}
    print_detail(client_of(ctx).put(f"/v1/routers/{router}/gateway", body), as_json=as_json)


@router_app.command("delete")
def router_delete(ctx: typer.Context, router: str = typer.Argument(...)) -> None:
    """Delete a router with its interfaces and gateway."""
    client = client_of(ctx)
    client.delete(f"/v1/routers/{_one(client, 'routers', router)['id']}")
    info(f"Deleted router {router}.")


@fip_app.command("create")
def fip_create(
    ctx: typer.Context,
    network: str = typer.Argument(..., help="external network"),
    port: str | None = typer.Option(None, "--port", help="associate with this port at once"),
    project: str | None = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Allocate a floating IP on an external network."""
    body: dict[str, Any] = {"network": network}
    if port:
        body["port"] = port
    print_detail(create_in_project(client_of(ctx), "/v1/floating-ips", body, project), as_json=as_json)


@fip_app.command("associate")
def fip_associate(
    ctx: typer.Context,
    floating_ip: str = typer.Argument(..., help="floating IP id"),
    port: str | None = typer.Argument(None, help="port id (omit to dissociate)"),
    as_json: bool = JSON,
) -> None:
    """DNAT a floating IP to a port (or dissociate it)."""
    print_detail(client_of(ctx).patch(f"/v1/floating-ips/{floating_ip}", {"port": port}), as_json=as_json)


@fip_app.command("delete")
def fip_delete(ctx: typer.Context, floating_ip: str = typer.Argument(...)) -> None:
    """Release a floating IP."""
    client_of(ctx).delete(f"/v1/floating-ips/{floating_ip}")
    info(f"Released floating IP {floating_ip}.")


# ---------------------------------------------------------------- security groups and QoS


@sg_app.command("create")
def sg_create(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    description: str = typer.Option("", "--description"),
    selector: list[str] = typer.Option([], "--selector", help="KEY=VALUE: apply to VMs with these labels"),
    project: str | None = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Create a security group (with --selector: a label policy)."""
    body: dict[str, Any] = {"name": name, "description": description}
    if selector:
        body["selector"] = key_values(selector, "--selector")
    print_detail(create_in_project(client_of(ctx), "/v1/security-groups", body, project), as_json=as_json)


@sg_app.command("list")
def sg_list(
    ctx: typer.Context, limit: int | None = LIMIT, cursor: str | None = CURSOR, as_json: bool = JSON
) -> None:
    """List security groups with their rules."""
    page = client_of(ctx).list_all("/v1/security-groups", limit=limit, cursor=cursor)
    if as_json:
        print_list(page, [], as_json=True, empty="")
        return
    for group in page["items"]:
        selector = ",".join(f"{k}={v}" for k, v in (group.get("selector") or {}).items())
        title = f"{group['name']} ({group['id']}){'  selector ' + selector if selector else ''}"
        print_list(
            {"items": group["rules"]}, RULE_COLUMNS, as_json=False, empty=f"{title}: no rules", title=title
        )


@sg_app.command("rule-add")
def sg_rule_add(
    ctx: typer.Context,
    group: str = typer.Argument(..., help="security group name or id"),
    direction: str = typer.Option("ingress", "--direction", help="ingress or egress"),
    ethertype: str = typer.Option("IPv4", "--ethertype", help="IPv4 or IPv6"),
    protocol: str | None = typer.Option(None, "--protocol", help="tcp udp icmp icmpv6 http tls ssh dns"),
    port: str | None = typer.Option(None, "--port", help="PORT or MIN-MAX"),
    remote_cidr: str | None = typer.Option(None, "--remote-cidr"),
    remote_group: str | None = typer.Option(None, "--remote-group"),
    remote_label: list[str] = typer.Option([], "--remote-label", help="KEY=VALUE: VMs with these labels"),
    sni: list[str] = typer.Option([], "--sni", help="tls: allowed server name (or *.suffix)"),
    deny: bool = typer.Option(False, "--deny", help="a deny rule instead of allow"),
    as_json: bool = JSON,
) -> None:
    """Add a rule to a security group."""
    body: dict[str, Any] = {
        "direction": direction,
        "ethertype": ethertype,
        "action": "deny" if deny else "allow",
    }
    if protocol:
        body["protocol"] = protocol
    if port:
        low, _, high = port.partition("-")
        body["port_min"], body["port_max"] = int(low), int(high or low)
    if remote_cidr:
        body["remote_cidr"] = remote_cidr
    if remote_group:
        body["remote_group"] = remote_group
    if remote_label:
        body["remote_labels"] = key_values(remote_label, "--remote-label")
    if sni:
        body["sni_allow"] = sni
    print_detail(client_of(ctx).post(f"/v1/security-groups/{group}/rules", body), as_json=as_json)


@sg_app.command("rule-delete")
def sg_rule_delete(
    ctx: typer.Context, group: str = typer.Argument(...), rule: str = typer.Argument(...)
) -> None:
    """Delete a rule from a security group."""
    client_of(ctx).delete(f"/v1/security-groups/{group}/rules/{rule}")
    info(f"Deleted rule {rule}.")


@qos_app.command("create")
def qos_create(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    ingress_kbps: int | None = typer.Option(None, "--ingress-kbps"),
    egress_kbps: int | None = typer.Option(None, "--egress-kbps"),
    guaranteed_kbps: int | None = typer.Option(None, "--guaranteed-kbps"),
    dscp: int | None = typer.Option(None, "--dscp", min=0, max=63),
    project: str | None = PROJECT,
    as_json: bool = JSON,
) -> None:
    """Create a QoS policy (limits in kbit/s, DSCP mark)."""
    body = {
        "name": name,
        "ingress_kbps": ingress_kbps,
        "egress_kbps": egress_kbps,
        "guaranteed_kbps": guaranteed_kbps,
        "dscp": dscp,
    }
    print_detail(create_in_project(client_of(ctx), "/v1/qos-policies", body, project), as_json=as_json)


@qos_app.command("list")
def qos_list(
    ctx: typer.Context, limit: int | None = LIMIT, cursor: str | None = CURSOR, as_json: bool = JSON
) -> None:
    """List QoS policies."""
    page = client_of(ctx).list_all("/v1/qos-policies", limit=limit, cursor=cursor)
    columns: list[Column] = [
        ("NAME", "name"),
        ("ID", "id"),
        ("IN KBPS", "ingress_kbps"),
        ("OUT KBPS", "egress_kbps"),
        ("GUARANTEED", "guaranteed_kbps"),
        ("DSCP", "dscp"),
    ]
    print_list(page, columns, as_json=as_json, empty="No QoS policies.")
