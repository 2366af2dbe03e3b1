"""``novacron scaling-group ...``: groups of identical VMs kept at a desired count
(``/v1/scaling-groups``), their members, their activity history, (``policy ...``) their
scaling policies and (``hook ...``, ``complete-action``) their lifecycle hooks.

A create, a new desired count or a refresh answers at once; ``--wait`` follows the group's task. Groups
are named by name or id.
"""

from __future__ import annotations

import json
from typing import Any

import typer

from novacron.cli.client import Client, CliError, resolve
from novacron.cli.common import (
    CURSOR,
    JSON,
    LIMIT,
    client_of,
    create_in_project,
    key_values,
    post_idempotent,
    project_id,
)
from novacron.cli.output import (
    Column,
    ago,
    detail_table,
    info,
    out,
    print_detail,
    print_json,
    print_list,
    print_table,
)
from novacron.cli.watch import watch_task

app = typer.Typer(no_args_is_help=True)
policy_app = typer.Typer(no_args_is_help=True, help="A group's scaling policies, evaluated on the server.")
app.add_typer(policy_app, name="policy")
hook_app = typer.Typer(no_args_is_help=True, help="A group's lifecycle hooks: signed webhooks it waits for.")
app.add_typer(hook_app, name="hook")

GROUP = typer.Argument(..., help="scaling group name or id")
PROJECT = typer.Option(None, "--project", help="project name or id (default: your project)")
WAIT = typer.Option(False, "--wait", help="follow the group's scale task to its end")

GROUP_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("ID", "id"),
    ("MIN", "min_size"),
    ("DESIRED", "desired"),
    ("MAX", "max_size"),
    ("IN SERVICE", lambda g: g["members"].get("in_service", 0)),
    ("LAUNCHING", lambda g: g["members"].get("launching", 0)),
    ("POLICY", "termination_policy"),
    ("STATUS", "status"),
    ("CREATED", lambda g: ago(g.get("created_at"))),
]
GROUP_FIELDS: list[Column] = [
    (key, key)
    for key in (
        "name", "id", "status", "min_size", "desired", "max_size", "members", "template", "lb_pools",
        "template_version", "termination_policy", "cooldown_s", "warmup_s", "drain_timeout_s",
        "server_group_id", "task_id", "project_id", "created_at", "updated_at",
    )
]  # fmt: skip
#: six columns, so a member's row fits 80 columns: what it waits on goes with its state, why with its health
MEMBER_COLUMNS: list[Column] = [
    ("VM", "vm_id"),
    ("STATE", lambda m: " ".join(filter(None, (m["state"], _waiting(m.get("waiting_on")))))),
    ("HEALTH", lambda m: ": ".join(filter(None, (m["health"], m.get("health_reason"))))),
    ("PROTECTED", "protected_from_scale_in"),
    ("TEMPLATE", lambda m: f"v{m['template_version']}"),
    ("LAUNCHED", lambda m: ago(m.get("launched_at"))),
]
ACTIVITY_COLUMNS: list[Column] = [
    ("STARTED", lambda a: ago(a.get("started_at"))),
    ("ACTION", "action"),
    ("OUTCOME", "outcome"),
    ("REASON", "reason"),
    ("POLICY", lambda a: a.get("policy") or ""),
    ("DETAIL", lambda a: a.get("detail") or ""),
    ("TASK", "task_id"),
]


def _waiting(wait: dict[str, Any] | None) -> str:
    if not wait:
        return ""
    told = (
        "delivered" if wait.get("delivered") else f"not delivered ({wait.get('delivery_error') or 'trying'})"
    )
    return f"(hook {wait['hook']} until {wait.get('deadline')}, {told})"


def _group(client: Client, ref: str) -> dict[str, Any]:
    return resolve(client, "scaling-groups", ref, "scaling-group")


def _pool(text: str) -> dict[str, Any]:
    pool_id, sep, port = text.partition(":")
    if not sep or not port.isdigit():
        raise CliError(f"--lb-pool expects POOL_ID:PORT, got '{text}'")
    return {"pool_id": pool_id, "protocol_port": int(port)}


def _settle(client: Client, group: dict[str, Any], wait: bool) -> dict[str, Any]:
    if wait and group.get("task_id"):
        watch_task(client, group["task_id"], label=f"scale {group['name']}")
        return _group(client, group["id"])
    return group


def _show(client: Client, group: dict[str, Any], as_json: bool) -> None:
    members = client.get(f"/v1/scaling-groups/{group['id']}/members")
    if as_json:
        print_json({**group, "member_list": members})
        return
    print_detail(group, as_json=False, fields=GROUP_FIELDS)
    if members:
        print_table(members, MEMBER_COLUMNS, title="Members")


@app.command("create")
def create(  # noqa: PLR0913  (one option per field of the launch template and sizes)
    ctx: typer.Context,
    name: str = typer.Argument(...),
    image: str = typer.Option(..., "--image", help="image name or id"),
    flavor: str = typer.Option(..., "--flavor", help="flavor name or id"),
    network: list[str] = typer.Option([], "--network", help="a network for each member's NIC (repeatable)"),
    security_group: list[str] = typer.Option([], "--security-group", help="for every NIC (repeatable)"),
    min_size: int = typer.Option(0, "--min"),
    max_size: int = typer.Option(..., "--max"),
    desired: int = typer.Option(..., "--desired"),
    lb_pool: list[str] = typer.Option([], "--lb-pool", help="POOL_ID:PORT members join (repeatable)"),
    termination_policy: str = typer.Option("oldest", "--termination-policy", help="oldest, newest or spread"),
    label: list[str] = typer.Option([], "--label", help="KEY=VALUE label of every member (repeatable)"),
    user_data: typer.FileText | None = typer.Option(None, "--user-data", help="a cloud-init file"),
    drain_timeout: int = typer.Option(
        30, "--drain-timeout", help="seconds a leaving VM's sessions may take to end (0-3600)"
    ),
    project: str | None = PROJECT,
    wait: bool = WAIT,
    as_json: bool = JSON,
) -> None:
    """Create a scaling group; its first scale task launches the desired count."""
    client = client_of(ctx)
    nics = [
        {"network": n, **({"security_groups": security_group} if security_group else {})} for n in network
    ]
    body: dict[str, Any] = {
        "name": name,
        "image": image,
        "flavor": flavor,
        "networks": nics,
        "min_size": min_size,
        "max_size": max_size,
        "desired": desired,
        "lb_pools": [_pool(p) for p in lb_pool],
        "termination_policy": termination_policy,
        "labels": key_values(label, "--label"),
        "user_data": user_data.read() if user_data is not None else "",
        "drain_timeout_s": drain_timeout,
    }
    group = create_in_project(client, "/v1/scaling-groups", body, project, idempotent=True)
    _show(client, _settle(client, group, wait), as_json)


@app.command("list")
def list_groups(
    ctx: typer.Context,
    project: str | None = PROJECT,
    limit: int | None = LIMIT,
    cursor: str | None = CURSOR,
    as_json: bool = JSON,
) -> None:
    """List scaling groups."""
    client = client_of(ctx)
    pid = project_id(client, project) if project else None
    page = client.list_all("/v1/scaling-groups", limit=limit, cursor=cursor, project_id=pid)
    print_list(page, GROUP_COLUMNS, as_json=as_json, empty="No scaling groups.")


@app.command("show")
def show(ctx: typer.Context, group: str = GROUP, as_json: bool = JSON) -> None:
    """Show a scaling group with its members."""
    client = client_of(ctx)
    _show(client, _group(client, group), as_json)


@app.command("set-desired")
def set_desired(
    ctx: typer.Context,
    group: str = GROUP,
    desired: int = typer.Argument(..., help="the new desired count"),
    reason: str | None = typer.Option(None, "--reason", help="recorded in the activity"),
    honor_cooldown: bool = typer.Option(False, "--honor-cooldown", help="refuse while cooling down"),
    wait: bool = WAIT,
    as_json: bool = JSON,
) -> None:
    """Set the desired count: the group scales out or in to it."""
    client = client_of(ctx)
    found = _group(client, group)
    body: dict[str, Any] = {"desired": desired, "honor_cooldown": honor_cooldown}
    if reason:
        body["reason"] = reason
    changed = client.patch(f"/v1/scaling-groups/{found['id']}", body)
    _show(client, _settle(client, changed, wait), as_json)


@app.command("set")
def set_settings(  # noqa: PLR0913  (one option per setting)
    ctx: typer.Context,
    group: str = GROUP,
    min_size: int | None = typer.Option(None, "--min", min=0, help="the smallest the group may get"),
    max_size: int | None = typer.Option(None, "--max", min=0, help="the largest the group may get"),
    termination_policy: str | None = typer.Option(None, "--termination-policy", help="oldest|newest|spread"),
    cooldown: int | None = typer.Option(None, "--cooldown", min=0, help="seconds after an activity"),
    warmup: int | None = typer.Option(None, "--warmup", min=0, help="seconds a new member may take to serve"),
    drain_timeout: int | None = typer.Option(None, "--drain-timeout", min=0, help="seconds a drain waits"),
    as_json: bool = JSON,
) -> None:
    """Change the group's limits and settings (the count: set-desired; the template: refresh)."""
    settings = {
        "min_size": min_size, "max_size": max_size, "termination_policy": termination_policy,
        "cooldown_s": cooldown, "warmup_s": warmup, "drain_timeout_s": drain_timeout,
    }  # fmt: skip
    body = {k: v for k, v in settings.items() if v is not None}
    if not body:
        raise CliError(
            "nothing to change",
            hint="give --min, --max, --termination-policy, --cooldown, --warmup or --drain-timeout",
        )
    client = client_of(ctx)
    found = _group(client, group)
    _show(client, client.patch(f"/v1/scaling-groups/{found['id']}", body), as_json)


@app.command("refresh")
def refresh(  # noqa: PLR0913  (the template fields it may change and the two bounds)
    ctx: typer.Context,
    group: str = GROUP,
    image: str | None = typer.Option(None, "--image", help="a new image (name or id)"),
    flavor: str | None = typer.Option(None, "--flavor", help="a new flavor (name or id)"),
    network: list[str] = typer.Option([], "--network", help="new NICs: a network each (repeatable)"),
    security_group: list[str] = typer.Option([], "--security-group", help="for every new NIC (repeatable)"),
    label: list[str] = typer.Option([], "--label", help="new labels, KEY=VALUE (repeatable; replaces all)"),
    user_data: typer.FileText | None = typer.Option(None, "--user-data", help="a new cloud-init file"),
    max_surge: int = typer.Option(1, "--max-surge", help="VMs above desired allowed during the refresh"),
    max_unavailable: int = typer.Option(
        0, "--max-unavailable", help="members in service that may be missing below desired"
    ),
    wait: bool = typer.Option(False, "--wait", help="follow the refresh to its end"),
    as_json: bool = JSON,
) -> None:
    """Change the launch template (the options given) and replace every member launched from an
    older one, in batches within --max-surge and --max-unavailable."""
    client = client_of(ctx)
    found = _group(client, group)
    body: dict[str, Any] = {"max_surge": max_surge, "max_unavailable": max_unavailable}
    if image:
        body["image"] = image
    if flavor:
        body["flavor"] = flavor
    if network:
        sgs = {"security_groups": security_group} if security_group else {}
        body["networks"] = [{"network": n, **sgs} for n in network]
    if label:
        body["labels"] = key_values(label, "--label")
    if user_data is not None:
        body["user_data"] = user_data.read()
    activity = post_idempotent(client, f"/v1/scaling-groups/{found['id']}/refresh", body)
    if wait:
        watch_task(client, activity["task_id"], label=f"refresh {found['name']}")
        recent = client.get(f"/v1/scaling-groups/{found['id']}/activities", limit=50)["items"]
        activity = next((a for a in recent if a["id"] == activity["id"]), activity)
    if as_json:
        print_json(activity)
        return
    numbers = activity["numbers"]
    skipped = numbers["skipped_protected"]
    info(
        f"Refresh of '{found['name']}' to template v{numbers['template_version']}: {activity['outcome']}, "
        f"replaced {numbers['replaced']}, {numbers['remaining']} remaining"
        + (f", protected and skipped: {', '.join(skipped)}" if skipped else "")
        + f" (task {activity['task_id']})."
    )


@app.command("protect")
def protect(
    ctx: typer.Context,
    group: str = GROUP,
    vm: str = typer.Argument(..., help="the member's VM id"),
    clear: bool = typer.Option(False, "--clear", help="clear the protection instead"),
) -> None:
    """Protect a member from scale-in (or clear it with --clear)."""
    client = client_of(ctx)
    found = _group(client, group)
    client.put(f"/v1/scaling-groups/{found['id']}/members/{vm}/protection", {"protected": not clear})
    info(f"{vm}: {'no longer ' if clear else ''}protected from scale-in")


@app.command("delete")
def delete(ctx: typer.Context, group: str = GROUP, wait: bool = WAIT) -> None:
    """Delete a scaling group: its members are drained from the pools and deleted first."""
    client = client_of(ctx)
    found = _group(client, group)
    activity = client.delete(f"/v1/scaling-groups/{found['id']}")
    if wait and activity.get("task_id"):
        watch_task(client, activity["task_id"], label=f"delete {found['name']}")
    info(f"Scaling group '{found['name']}' is being deleted (task {activity.get('task_id')}).")


@app.command("activities")
def activities(
    ctx: typer.Context,
    group: str = GROUP,
    limit: int | None = LIMIT,
    cursor: str | None = CURSOR,
    as_json: bool = JSON,
) -> None:
    """The group's activity history, newest first: each action, its reason and how it ended."""
    client = client_of(ctx)
    found = _group(client, group)
    page = client.list_all(f"/v1/scaling-groups/{found['id']}/activities", limit=limit, cursor=cursor)
    print_list(page, ACTIVITY_COLUMNS, as_json=as_json, empty="No activities.")


POLICY_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("KIND", "kind"),
    ("ENABLED", "enabled"),
    ("COOLDOWN", lambda p: p.get("cooldown_s") if p.get("cooldown_s") is not None else "group's"),
    ("PARAMS", lambda p: json.dumps(p["params"], separators=(",", ":"))),
    ("ID", "id"),
]


def _step(text: str) -> dict[str, Any]:
    try:
        lower, upper, change = text.split(":")
        return {"lower": float(lower), "upper": float(upper) if upper else None, "change": int(change)}
    except ValueError:
        raise CliError(f"--step expects LOWER:UPPER:CHANGE (UPPER may be empty), got '{text}'") from None


def _action(text: str) -> dict[str, Any]:
    at, sep, desired = text.partition("=")
    if not sep or not desired.isdigit():
        raise CliError(f"--at expects HH:MM=DESIRED (UTC), got '{text}'")
    return {"at": at, "desired": int(desired)}


@policy_app.command("create")
def policy_create(  # noqa: PLR0913  (one option per parameter of the policy kinds)
    ctx: typer.Context,
    group: str = GROUP,
    name: str = typer.Argument(..., help="the policy's name, unique in the group"),
    kind: str = typer.Option(..., "--kind", help="target_tracking, step, scheduled or predictive"),
    metric: str | None = typer.Option(None, "--metric", help="cpu (guest CPU %) or requests_per_member"),
    target: float | None = typer.Option(None, "--target", help="the metric's target per VM"),
    step: list[str] = typer.Option([], "--step", help="LOWER:UPPER:CHANGE of a step policy (repeatable)"),
    at: list[str] = typer.Option([], "--at", help="HH:MM=DESIRED (UTC) of a scheduled policy (repeatable)"),
    boot_delay: float | None = typer.Option(None, "--boot-delay", help="predictive: seconds to serve"),
    window: float | None = typer.Option(
        None, "--window", help="target/step: seconds the metric's rate is read over (20-3600, default 60)"
    ),
    max_cost_per_hour: float | None = typer.Option(None, "--max-cost-per-hour", help="no scale-out above"),
    cooldown: int | None = typer.Option(
        None, "--cooldown", help="seconds before a scale-in (default: group's)"
    ),
    disabled: bool = typer.Option(False, "--disabled", help="create it without running it"),
    as_json: bool = JSON,
) -> None:
    """Attach a scaling policy to a group; the server evaluates it from the group's metrics."""
    client = client_of(ctx)
    found = _group(client, group)
    optional = {
        "metric": metric,
        "target": target,
        "boot_delay_s": boot_delay,
        "window_s": window,
        "max_cost_per_hour": max_cost_per_hour,
    }
    params: dict[str, Any] = {k: v for k, v in optional.items() if v is not None}
    if step:
        params["steps"] = [_step(s) for s in step]
    if at:
        params["actions"] = [_action(a) for a in at]
    body = {"name": name, "kind": kind, "params": params, "enabled": not disabled, "cooldown_s": cooldown}
    policy = post_idempotent(client, f"/v1/scaling-groups/{found['id']}/policies", body)
    if as_json:
        print_json(policy)
    else:
        out.print(
            detail_table(policy, [(k, k) for k in ("name", "id", "kind", "params", "enabled", "cooldown_s")])
        )


def _list_under(
    ctx: typer.Context, group: str, sub: str, columns: list[Column], empty: str, as_json: bool
) -> None:
    """A group's sub-resources (``policies``, ``lifecycle-hooks``) as a table or JSON."""
    client = client_of(ctx)
    rows = client.get(f"/v1/scaling-groups/{_group(client, group)['id']}/{sub}")
    if as_json:
        print_json(rows)
    else:
        print_list({"items": rows}, columns, as_json=False, empty=empty)


def _delete_under(ctx: typer.Context, group: str, sub: str, ref: str, what: str) -> None:
    client = client_of(ctx)
    found = _group(client, group)
    client.delete(f"/v1/scaling-groups/{found['id']}/{sub}/{ref}")
    info(f"{what} '{ref}' of '{found['name']}' deleted.")


@policy_app.command("list")
def policy_list(ctx: typer.Context, group: str = GROUP, as_json: bool = JSON) -> None:
    """The group's scaling policies."""
    _list_under(ctx, group, "policies", POLICY_COLUMNS, "No scaling policies.", as_json)


@policy_app.command("delete")
def policy_delete(
    ctx: typer.Context, group: str = GROUP, policy: str = typer.Argument(..., help="policy name or id")
) -> None:
    """Remove a scaling policy (the group keeps its size)."""
    _delete_under(ctx, group, "policies", policy, "Scaling policy")


HOOK_COLUMNS: list[Column] = [
    ("NAME", "name"),
    ("TRANSITION", "transition"),
    ("URL", "url"),
    ("TIMEOUT", lambda h: f"{h['timeout_s']} s"),
    ("DEFAULT", "default_result"),
    ("ID", "id"),
]


@hook_app.command("add")
def hook_add(  # noqa: PLR0913  (one option per field of a hook)
    ctx: typer.Context,
    group: str = GROUP,
    name: str = typer.Argument(..., help="the hook's name, unique in the group (hooks run in name order)"),
    transition: str = typer.Option(..., "--transition", help="launching or terminating"),
    url: str = typer.Option(..., "--url", help="the receiver the signed event is POSTed to"),
    secret: str = typer.Option(
        ...,
        "--secret",
        prompt=True,
        hide_input=True,
        envvar="NOVACRON_HOOK_SECRET",
        help="HMAC key of the NovaCron-Signature header (16+ characters; never shown again)",
    ),  # fmt: skip
    timeout: int = typer.Option(300, "--timeout", help="seconds the group waits for the answer"),
    default_result: str = typer.Option(
        "continue", "--default-result", help="continue or abandon, at timeout"
    ),
    as_json: bool = JSON,
) -> None:
    """Add a lifecycle hook: on each launch (or termination) of a member the group POSTs a signed
    event to URL and waits for `complete-action` (or the timeout, then the default result)."""
    client = client_of(ctx)
    found = _group(client, group)
    body = {
        "name": name,
        "transition": transition,
        "url": url,
        "secret": secret,
        "timeout_s": timeout,
        "default_result": default_result,
    }
    hook = post_idempotent(client, f"/v1/scaling-groups/{found['id']}/lifecycle-hooks", body)
    if as_json:
        print_json(hook)
    else:
        out.print(detail_table(hook, [(k, k) for k in ("name", "id", "transition", "url", "timeout_s",
                                                         "default_result")]))  # fmt: skip


@hook_app.command("list")
def hook_list(ctx: typer.Context, group: str = GROUP, as_json: bool = JSON) -> None:
    """The group's lifecycle hooks (their secrets are never shown)."""
    _list_under(ctx, group, "lifecycle-hooks", HOOK_COLUMNS, "No lifecycle hooks.", as_json)


@hook_app.command("delete")
def hook_delete(
    ctx: typer.Context, group: str = GROUP, hook: str = typer.Argument(..., help="hook name or id")
) -> None:
    """Remove a lifecycle hook."""
    _delete_under(ctx, group, "lifecycle-hooks", hook, "Lifecycle hook")


@app.command("complete-action")
def complete_action(
    ctx: typer.Context,
    group: str = GROUP,
    token: str = typer.Argument(..., help="the token of the lifecycle event"),
    result: str = typer.Option(..., "--result", help="continue or abandon"),
    as_json: bool = JSON,
) -> None:
    """Answer a lifecycle action the group waits on: continue (the member joins, or is deleted) or
    abandon (a launching member's VM is deleted instead of joining)."""
    client = client_of(ctx)
    found = _group(client, group)
    done = client.post(
        f"/v1/scaling-groups/{found['id']}/lifecycle-actions", {"token": token, "result": result}
    )
    if as_json:
        print_json(done)
    else:
        what = f"{done['hook']} ({done['transition']}) of {done['vm_id']}"
        info(f"{what}: {done['result']}; the member is {done['state']}")
