"""``novacron lb ...``: load balancers with their listeners, pools, members, health monitors and
L7 policies (``/v1/loadbalancers``).

Every change answers at once with the load balancer ``PENDING_*`` while its ``loadbalancer.apply``
task realises it; ``--wait`` follows that task (a progress bar) so the next change is not refused
with "retry when it is ACTIVE". Load balancers and their children are named by name or id.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import typer

from novacron.cli.client import ApiError, Client, CliError, resolve
from novacron.cli.common import (
    CURSOR,
    JSON,
    LIMIT,
    client_of,
    create_in_project,
    post_idempotent,
    project_id,
    resolve_vm,
)
from novacron.cli.output import (
    Column,
    ago,
    info,
    out,
    print_detail,
    print_json,
    print_list,
    print_table,
)
from novacron.cli.watch import watch_task

app = typer.Typer(no_args_is_help=True)
listener_app = typer.Typer(no_args_is_help=True)
pool_app = typer.Typer(no_args_is_help=True)
member_app = typer.Typer(no_args_is_help=True)
monitor_app = typer.Typer(no_args_is_help=True)
l7_app = typer.Typer(no_args_is_help=True)
app.add_typer(listener_app, name="listener", help="Listeners: the protocol and port the VIP answers on.")
app.add_typer(pool_app, name="pool", help="Pools: the members a listener balances onto.")
app.add_typer(member_app, name="member", help="A pool's members: address or VM, port, weight, drain.")
app.add_typer(monitor_app, name="healthmonitor", help="A pool's health monitor.")
app.add_typer(l7_app, name="l7policy", help="A listener's L7 policies with their rules.")

PROJECT = typer.Option(None, "--project", help="project name or id (default: your project)")
WAIT = typer.Option(False, "--wait", help="follow the load balancer's task until the change is realised")
LB = typer.Argument(..., help="load balancer name or id")
POOL = typer.Argument(..., help="pool name or id")
LISTENER = typer.Argument(..., help="listener name or id")

LB_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("VIP", "vip_address"),
    ("TOPOLOGY", "topology"),
    ("PROVISIONING", "provisioning_status"),
    ("OPERATING", "operating_status"),
    ("LISTENERS", lambda lb: len(lb.get("listeners", []))),
    ("POOLS", lambda lb: len(lb.get("pools", []))),
    ("CREATED", lambda lb: ago(lb.get("created_at"))),
]
LB_FIELDS: list[Column] = [
    (key, key)
    for key in (
        "name", "id", "description", "vip_address", "floating_ip", "vip_subnet_id", "vip_network_id",
        "vip_port_id", "topology", "admin_state_up", "provisioning_status", "operating_status", "task_id",
        "project_id", "tenant_id", "amphorae", "created_at", "updated_at",
    )
]  # fmt: skip
LISTENER_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("PROTOCOL", "protocol"),
    ("PORT", "protocol_port"),
    ("DEFAULT POOL", "default_pool_id"),
    ("CONN LIMIT", "connection_limit"),
    ("CERTIFICATE", "default_tls_container_ref"),
    ("L7", lambda li: len(li.get("l7policies") or [])),
    ("OPERATING", "operating_status"),
]
POOL_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("PROTOCOL", "protocol"),
    ("ALGORITHM", "lb_algorithm"),
    ("PERSISTENCE", lambda p: (p.get("session_persistence") or {}).get("type", "")),
    ("MONITOR", lambda p: (p.get("healthmonitor") or {}).get("type", "")),
    ("OPERATING", "operating_status"),
]
MEMBER_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("ADDRESS", "address"),
    ("PORT", "protocol_port"),
    ("VM", "vm_id"),
    ("WEIGHT", "weight"),
    ("BACKUP", "backup"),
    ("DRAIN", "drain"),
    ("ADMIN UP", "admin_state_up"),
    ("OPERATING", "operating_status"),
]
L7_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("POSITION", "position"),
    ("ACTION", "action"),
    ("TARGET", lambda p: p.get("redirect_pool_id") or p.get("redirect_url") or ""),
    ("RULES", lambda p: "; ".join(_rule_text(r) for r in p.get("rules", []))),
]


# ---------------------------------------------------------------- helpers


def _ref(ref: str) -> str:
    return quote(ref, safe="")


def _lb(client: Client, ref: str) -> dict[str, Any]:
    return resolve(client, "loadbalancers", ref, "lb")


def _child(client: Client, lb_id: str, path: str, ref: str) -> dict[str, Any]:
    """A child (``listeners/x``, ``pools/x``, ``pools/p/members/x``) of a load balancer by name or id."""
    found: dict[str, Any] = client.get(f"/v1/loadbalancers/{lb_id}/{path}/{_ref(ref)}")
    return found


def _pool_path(client: Client, lb_ref: str, pool_ref: str) -> tuple[str, str]:
    """The load balancer's id and the pool's path."""
    lb_id = _lb(client, lb_ref)["id"]
    return lb_id, f"/v1/loadbalancers/{lb_id}/pools/{_child(client, lb_id, 'pools', pool_ref)['id']}"


def _create(client: Client, path: str, body: dict[str, Any]) -> Any:
    """POST a new child with an idempotency key, the options not given left to the API's defaults."""
    return post_idempotent(client, path, {k: v for k, v in body.items() if v is not None})


def _settle(client: Client, lb_id: str, wait: bool, label: str) -> None:
    """With ``--wait``: follow the load balancer's task (the one its last change queued)."""
    if not wait:
        return
    task_id = client.get(f"/v1/loadbalancers/{lb_id}").get("task_id")
    if task_id:
        watch_task(client, task_id, label=label)


def _done(client: Client, lb_id: str, wait: bool, label: str, obj: dict[str, Any], as_json: bool) -> None:
    _settle(client, lb_id, wait, label)
    print_detail(obj, as_json=as_json)


def _rule_text(rule: dict[str, Any]) -> str:
    key = f":{rule['key']}" if rule.get("key") else ""
    return f"{'!' if rule.get('invert') else ''}{rule['type']}{key} {rule['compare_type']} {rule['value']}"


def parse_rule(text: str) -> dict[str, Any]:
    """``[!]TYPE[:KEY] COMPARE VALUE`` (``!`` inverts) as an L7 rule, e.g. ``HEADER:X-Env EQUAL_TO prod``."""
    parts = text.split(None, 2)
    if len(parts) != 3:  # noqa: PLR2004 - the three words of a rule
        raise CliError(f"--rule expects '[!]TYPE[:KEY] COMPARE VALUE', got '{text}'")
    kind, compare, value = parts
    invert = kind.startswith("!")
    kind, _, key = kind.removeprefix("!").partition(":")
    rule: dict[str, Any] = {"type": kind.upper(), "compare_type": compare.upper(), "value": value}
    if key:
        rule["key"] = key
    if invert:
        rule["invert"] = True
    return rule


# ---------------------------------------------------------------- load balancers


@app.command("create")
def lb_create(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    subnet: str = typer.Option(..., "--subnet", help="the VIP's subnet (one of yours; name or id)"),
    vip_address: str | None = typer.Option(None, "--vip-address", help="default: the next free address"),
    topology: str = typer.Option("SINGLE", "--topology", help="SINGLE or ACTIVE_STANDBY (two hosts)"),
    description: str = typer.Option("", "--description"),
    floating_network: str | None = typer.Option(
        None,
        "--floating-network",
        help="an external network to take a floating IP from for the VIP (a router of yours joins them)",
    ),
    project: str | None = PROJECT,
    wait: bool = WAIT,
    as_json: bool = JSON,
) -> None:
    """Create a load balancer with a VIP on one of your subnets (and a floating IP for it)."""
    client = client_of(ctx)
    body: dict[str, Any] = {"name": name, "vip_subnet_id": subnet, "topology": topology.upper()}
    if vip_address:
        body["vip_address"] = vip_address
    if description:
        body["description"] = description
    if floating_network:
        body["floating_network_id"] = floating_network
    lb = create_in_project(client, "/v1/loadbalancers", body, project, idempotent=True)
    if wait:
        watch_task(client, lb["task_id"], label=f"create {name}")
        lb = client.get(f"/v1/loadbalancers/{lb['id']}")
    print_detail(lb, as_json=as_json, fields=LB_FIELDS)


@app.command("list")
def lb_list(
    ctx: typer.Context,
    project: str | None = PROJECT,
    limit: int | None = LIMIT,
    cursor: str | None = CURSOR,
    as_json: bool = JSON,
) -> None:
    """List load balancers."""
    client = client_of(ctx)
    pid = project_id(client, project) if project else None
    page = client.list_all("/v1/loadbalancers", limit=limit, cursor=cursor, project_id=pid)
    print_list(page, LB_COLUMNS, as_json=as_json, empty="No load balancers.")


@app.command("show")
def lb_show(ctx: typer.Context, lb: str = LB, as_json: bool = JSON) -> None:
    """Show a load balancer with its listeners, pools and members and their operating status."""
    client = client_of(ctx)
    found = _lb(client, lb)
    base = f"/v1/loadbalancers/{found['id']}"
    listeners = client.list_all(base + "/listeners")["items"]
    pools = client.list_all(base + "/pools")["items"]
    for pool in pools:
        pool["members"] = client.list_all(f"{base}/pools/{pool['id']}/members")["items"]
    if as_json:
        print_json({**found, "listeners": listeners, "pools": pools})
        return
    print_detail(found, as_json=False, fields=LB_FIELDS)
    if listeners:
        print_table(listeners, LISTENER_COLUMNS, title="Listeners")
    for pool in pools:
        print_table([pool], POOL_COLUMNS, title=f"Pool {pool['name'] or pool['id']}")
        if pool["members"]:
            print_table(pool["members"], MEMBER_COLUMNS)
        else:
            out.print("[dim]No members.[/]")


@app.command("delete")
def lb_delete(ctx: typer.Context, lb: str = LB, wait: bool = WAIT) -> None:
    """Delete a load balancer with everything in it (its legs are stopped, its VIP released)."""
    client = client_of(ctx)
    found = _lb(client, lb)
    client.delete(f"/v1/loadbalancers/{found['id']}")
    if wait:
        try:  # the delete's task is the load balancer's while it is PENDING_DELETE
            task_id = client.get(f"/v1/loadbalancers/{found['id']}")["task_id"]
        except ApiError as exc:
            if exc.status != HTTPStatus.NOT_FOUND:
                raise
        else:
            watch_task(client, task_id, label=f"delete {found['name']}")
        info(f"Deleted load balancer {found['name']}.")
    else:
        info(f"Deleting load balancer {found['name']} (novacron lb show {found['id']} until it is gone).")


# ---------------------------------------------------------------- listeners


@listener_app.command("create")
def listener_create(
    ctx: typer.Context,
    lb: str = LB,
    protocol: str = typer.Option(..., "--protocol", help="TCP, HTTP, HTTPS or TERMINATED_HTTPS"),
    port: int = typer.Option(..., "--port", min=1, max=65535),
    name: str = typer.Option("", "--name"),
    default_pool: str | None = typer.Option(None, "--default-pool", help="pool name or id"),
    connection_limit: int | None = typer.Option(None, "--connection-limit"),
    certificate: str | None = typer.Option(
        None, "--certificate", help="TERMINATED_HTTPS: the default certificate's reference"
    ),
    sni: list[str] = typer.Option([], "--sni", help="another certificate chosen by SNI, repeatable"),
    insert_header: list[str] = typer.Option([], "--insert-header", help="X-Forwarded-For|-Port|-Proto"),
    bandwidth_kbit: int | None = typer.Option(None, "--bandwidth-kbit", help="limit sent to clients, kbit/s"),
    connection_rate: int | None = typer.Option(None, "--connection-rate", help="new connections per second"),
    syn_flood: bool = typer.Option(False, "--syn-flood", help="SYN cookies on the port (synproxy)"),
    wait: bool = WAIT,
    as_json: bool = JSON,
) -> None:
    """Add a listener: the protocol and port the VIP answers on."""
    client = client_of(ctx)
    lb_id = _lb(client, lb)["id"]
    body: dict[str, Any] = {
        "name": name,
        "protocol": protocol.upper(),
        "protocol_port": port,
        "default_pool_id": _child(client, lb_id, "pools", default_pool)["id"] if default_pool else None,
        "connection_limit": connection_limit,
        "default_tls_container_ref": certificate,
        "sni_container_refs": sni,
        "insert_headers": insert_header,
    }
    if bandwidth_kbit is not None or connection_rate is not None:
        body["qos"] = {"bandwidth_kbit": bandwidth_kbit, "connection_rate": connection_rate}
    if syn_flood:
        body["protection"] = {"syn_flood": True}
    made = _create(client, f"/v1/loadbalancers/{lb_id}/listeners", body)
    _done(client, lb_id, wait, f"listener {name or port}", made, as_json)


@listener_app.command("list")
def listener_list(ctx: typer.Context, lb: str = LB, as_json: bool = JSON) -> None:
    """List a load balancer's listeners."""
    client = client_of(ctx)
    page = client.list_all(f"/v1/loadbalancers/{_lb(client, lb)['id']}/listeners")
    print_list(page, LISTENER_COLUMNS, as_json=as_json, empty="No listeners.")


@listener_app.command("delete")
def listener_delete(ctx: typer.Context, lb: str = LB, listener: str = LISTENER, wait: bool = WAIT) -> None:
    """Delete a listener (with its L7 policies)."""
    client = client_of(ctx)
    lb_id = _lb(client, lb)["id"]
    client.delete(f"/v1/loadbalancers/{lb_id}/listeners/{_child(client, lb_id, 'listeners', listener)['id']}")
    _settle(client, lb_id, wait, f"delete listener {listener}")
    info(f"Deleted listener {listener}.")


# ---------------------------------------------------------------- pools and health monitors


@pool_app.command("create")
def pool_create(
    ctx: typer.Context,
    lb: str = LB,
    protocol: str = typer.Option(..., "--protocol", help="TCP, HTTP, HTTPS, PROXY or PROXYV2"),
    name: str = typer.Option("", "--name"),
    algorithm: str = typer.Option(
        "ROUND_ROBIN", "--algorithm", help="ROUND_ROBIN, LEAST_CONNECTIONS, SOURCE_IP, URI_HASH, ..."
    ),
    persistence: str | None = typer.Option(
        None, "--persistence", help="SOURCE_IP, HTTP_COOKIE or APP_COOKIE"
    ),
    cookie_name: str | None = typer.Option(None, "--cookie-name", help="APP_COOKIE: the cookie"),
    listener: str | None = typer.Option(None, "--listener", help="make it this listener's default pool"),
    wait: bool = WAIT,
    as_json: bool = JSON,
) -> None:
    """Add a pool."""
    client = client_of(ctx)
    lb_id = _lb(client, lb)["id"]
    body: dict[str, Any] = {
        "name": name,
        "protocol": protocol.upper(),
        "lb_algorithm": algorithm.upper(),
        "listener_id": listener,
    }
    if persistence:
        body["session_persistence"] = {"type": persistence.upper(), "cookie_name": cookie_name}
    made = _create(client, f"/v1/loadbalancers/{lb_id}/pools", body)
    _done(client, lb_id, wait, f"pool {name or made['id']}", made, as_json)


@pool_app.command("list")
def pool_list(ctx: typer.Context, lb: str = LB, as_json: bool = JSON) -> None:
    """List a load balancer's pools."""
    client = client_of(ctx)
    page = client.list_all(f"/v1/loadbalancers/{_lb(client, lb)['id']}/pools")
    print_list(page, POOL_COLUMNS, as_json=as_json, empty="No pools.")


@pool_app.command("delete")
def pool_delete(ctx: typer.Context, lb: str = LB, pool: str = POOL, wait: bool = WAIT) -> None:
    """Delete a pool with its members (refused while a listener or L7 policy uses it)."""
    client = client_of(ctx)
    lb_id, path = _pool_path(client, lb, pool)
    client.delete(path)
    _settle(client, lb_id, wait, f"delete pool {pool}")
    info(f"Deleted pool {pool}.")


@monitor_app.command("set")
def monitor_set(
    ctx: typer.Context,
    lb: str = LB,
    pool: str = POOL,
    kind: str = typer.Option("TCP", "--type", help="TCP, HTTP or HTTPS"),
    delay: int = typer.Option(5, "--delay", help="seconds between checks"),
    timeout: int = typer.Option(3, "--timeout", help="seconds to answer"),
    max_retries: int = typer.Option(2, "--max-retries", help="successes that bring a member up"),
    max_retries_down: int = typer.Option(3, "--max-retries-down", help="failures that take it down"),
    http_method: str = typer.Option("GET", "--http-method"),
    url_path: str = typer.Option("/", "--url-path"),
    expected_codes: str = typer.Option("200", "--expected-codes", help="200, 200-299 or 200,202"),
    wait: bool = WAIT,
    as_json: bool = JSON,
) -> None:
    """Set (create or replace) a pool's health monitor."""
    client = client_of(ctx)
    lb_id, path = _pool_path(client, lb, pool)
    body = {
        "type": kind.upper(),
        "delay": delay,
        "timeout": timeout,
        "max_retries": max_retries,
        "max_retries_down": max_retries_down,
        "http_method": http_method.upper(),
        "url_path": url_path,
        "expected_codes": expected_codes,
    }
    changed = client.put(path + "/healthmonitor", body)
    _done(client, lb_id, wait, f"health monitor of {pool}", changed, as_json)


@monitor_app.command("delete")
def monitor_delete(ctx: typer.Context, lb: str = LB, pool: str = POOL, wait: bool = WAIT) -> None:
    """Remove a pool's health monitor (its members are then not checked)."""
    client = client_of(ctx)
    lb_id, path = _pool_path(client, lb, pool)
    client.delete(path + "/healthmonitor")
    _settle(client, lb_id, wait, f"health monitor of {pool}")
    info(f"Removed the health monitor of pool {pool}.")


# ---------------------------------------------------------------- members


@member_app.command("add")
def member_add(
    ctx: typer.Context,
    lb: str = LB,
    pool: str = POOL,
    port: int = typer.Option(..., "--port", min=1, max=65535, help="the member's port"),
    address: str | None = typer.Option(None, "--address", help="an address of one of your subnets"),
    vm: str | None = typer.Option(None, "--vm", help="instead of --address: this VM's (name or id)"),
    network: str | None = typer.Option(None, "--network", help="with --vm: its port on this network"),
    subnet: str | None = typer.Option(None, "--subnet", help="with --address: the subnet it is in"),
    name: str = typer.Option("", "--name"),
    weight: int = typer.Option(1, "--weight", min=0, max=256),
    backup: bool = typer.Option(False, "--backup", help="used only when no other member is up"),
    drain: bool = typer.Option(False, "--drain", help="keep its sessions, send it nothing new"),
    disabled: bool = typer.Option(False, "--disabled", help="administratively down"),
    wait: bool = WAIT,
    as_json: bool = JSON,
) -> None:
    """Add a member to a pool: an address of yours, or a VM (its port's address)."""
    if (address is None) == (vm is None):
        raise CliError("give --address or --vm (one of them)")
    client = client_of(ctx)
    lb_id, path = _pool_path(client, lb, pool)
    body: dict[str, Any] = {
        "name": name,
        "protocol_port": port,
        "address": address,
        "subnet_id": subnet,
        "vm_id": resolve_vm(ctx, vm)["id"] if vm else None,
        "network": network,
        "weight": weight,
        "backup": backup,
        "drain": drain,
        "admin_state_up": not disabled,
    }
    made = _create(client, path + "/members", body)
    _done(client, lb_id, wait, f"member {address or vm}", made, as_json)


@member_app.command("list")
def member_list(ctx: typer.Context, lb: str = LB, pool: str = POOL, as_json: bool = JSON) -> None:
    """List a pool's members with their operating status."""
    client = client_of(ctx)
    page = client.list_all(_pool_path(client, lb, pool)[1] + "/members")
    print_list(page, MEMBER_COLUMNS, as_json=as_json, empty="No members.")


@member_app.command("set")
def member_set(
    ctx: typer.Context,
    lb: str = LB,
    pool: str = POOL,
    member: str = typer.Argument(..., help="member name or id"),
    weight: int | None = typer.Option(None, "--weight", min=0, max=256),
    backup: bool | None = typer.Option(None, "--backup/--no-backup"),
    drain: bool | None = typer.Option(None, "--drain/--no-drain", help="send it nothing new / undo"),
    enabled: bool | None = typer.Option(None, "--enable/--disable", help="administrative state"),
    wait: bool = WAIT,
    as_json: bool = JSON,
) -> None:
    """Change a member: weight, backup, drain, administrative state."""
    body = {"weight": weight, "backup": backup, "drain": drain, "admin_state_up": enabled}
    changes = {k: v for k, v in body.items() if v is not None}
    if not changes:
        raise CliError(
            "nothing to change",
            hint="Give --weight, --backup/--no-backup, --drain/--no-drain or --enable/--disable.",
        )
    client = client_of(ctx)
    lb_id, path = _pool_path(client, lb, pool)
    changed = client.patch(f"{path}/members/{_ref(member)}", changes)
    _done(client, lb_id, wait, f"member {member}", changed, as_json)


@member_app.command("remove")
def member_remove(
    ctx: typer.Context,
    lb: str = LB,
    pool: str = POOL,
    member: str = typer.Argument(..., help="member name or id"),
    wait: bool = WAIT,
) -> None:
    """Remove a member from its pool."""
    client = client_of(ctx)
    lb_id, path = _pool_path(client, lb, pool)
    client.delete(f"{path}/members/{_ref(member)}")
    _settle(client, lb_id, wait, f"remove member {member}")
    info(f"Removed member {member}.")


# ---------------------------------------------------------------- L7 policies


def _listener_path(client: Client, lb_ref: str, listener_ref: str) -> tuple[str, str]:
    """The load balancer's id and the listener's path."""
    lb_id = _lb(client, lb_ref)["id"]
    return (
        lb_id,
        f"/v1/loadbalancers/{lb_id}/listeners/{_child(client, lb_id, 'listeners', listener_ref)['id']}",
    )


@l7_app.command("create")
def l7_create(
    ctx: typer.Context,
    lb: str = LB,
    listener: str = LISTENER,
    action: str = typer.Option(..., "--action", help="REDIRECT_TO_POOL, REDIRECT_TO_URL or REJECT"),
    rule: list[str] = typer.Option(
        [], "--rule", help="'[!]TYPE[:KEY] COMPARE VALUE', e.g. 'PATH STARTS_WITH /api'; all must match"
    ),
    position: int = typer.Option(1, "--position", min=1),
    redirect_pool: str | None = typer.Option(
        None, "--redirect-pool", help="REDIRECT_TO_POOL: pool name or id"
    ),
    redirect_url: str | None = typer.Option(None, "--redirect-url", help="REDIRECT_TO_URL: the URL"),
    redirect_http_code: int = typer.Option(302, "--redirect-http-code"),
    wait: bool = WAIT,
    as_json: bool = JSON,
) -> None:
    """Add an L7 policy to a listener: when all its rules match, redirect or reject."""
    client = client_of(ctx)
    lb_id, path = _listener_path(client, lb, listener)
    body: dict[str, Any] = {
        "action": action.upper(),
        "position": position,
        "rules": [parse_rule(r) for r in rule],
        "redirect_pool_id": _child(client, lb_id, "pools", redirect_pool)["id"] if redirect_pool else None,
        "redirect_url": redirect_url,
        "redirect_http_code": redirect_http_code,
    }
    made = _create(client, path + "/l7policies", body)
    _done(client, lb_id, wait, f"L7 policy on {listener}", made, as_json)


@l7_app.command("list")
def l7_list(ctx: typer.Context, lb: str = LB, listener: str = LISTENER, as_json: bool = JSON) -> None:
    """List a listener's L7 policies in the order they are evaluated."""
    client = client_of(ctx)
    page = client.get(_listener_path(client, lb, listener)[1] + "/l7policies")
    print_list(page, L7_COLUMNS, as_json=as_json, empty="No L7 policies.")


@l7_app.command("delete")
def l7_delete(
    ctx: typer.Context,
    lb: str = LB,
    listener: str = LISTENER,
    policy: str = typer.Argument(..., help="L7 policy id"),
    wait: bool = WAIT,
) -> None:
    """Delete an L7 policy."""
    client = client_of(ctx)
    lb_id, path = _listener_path(client, lb, listener)
    client.delete(f"{path}/l7policies/{_ref(policy)}")
    _settle(client, lb_id, wait, f"delete L7 policy {policy}")
    info(f"Deleted L7 policy {policy}.")
