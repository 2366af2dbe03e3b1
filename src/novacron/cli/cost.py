"""``novacron cost ...`` and ``novacron capacity forecast``: what VMs cost, rightsizing, the budget
check, scaling's ROI on a load trace (offline), and when the cluster runs out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from novacron.autoscaling.replay import read_trace
from novacron.autoscaling.roi import roi as roi_of
from novacron.cli.client import CliError
from novacron.cli.common import JSON, client_of
from novacron.cli.output import Column, gib, info, mib, money, out, print_detail, print_json, print_list
from novacron.cli.quota import TENANT, tenant_id
from novacron.cli.usage_report import TENANT_OPTION, cli_options

cost_app = typer.Typer(no_args_is_help=True)
capacity_app = typer.Typer(no_args_is_help=True)

WINDOW = typer.Option("7d", "--window", "-w", help="how far back to look: 7d, 12h, seconds")
VMS = typer.Option(None, "--vm", help="only this VM id (repeat: a scaling group's members)")


def _money(value: float | None, currency: str = "") -> str:
    return money(value, currency).strip()


def _cloud(row: dict[str, Any], provider: str) -> str:
    shape = row["clouds"].get(provider)
    return "none fits" if shape is None else f"{shape['type']} {shape['per_hour']:.4f}"


@cost_app.command("show")
def cost_show(
    ctx: typer.Context,
    tenant: str | None = TENANT,
    project: str | None = typer.Option(None, "--project", "-p", help="project id"),
    vm: list[str] | None = VMS,
    as_json: bool = JSON,
) -> None:
    """What each VM costs per hour and month, and the cheapest fitting AWS, Azure and GCP shape."""
    client = client_of(ctx)
    params = {"tenant_id": tenant_id(client, tenant) if tenant else None, "project_id": project, "vm_id": vm}
    with cli_options(TENANT_OPTION):
        r = client.get("/v1/cost", **params)
    cur = r["currency"]
    columns: list[Column] = [
        ("NAME", "name"),
        ("STATE", "state"),
        ("FLAVOR", lambda v: v["flavor"] or "-"),
        ("SHAPE", lambda v: f"{v['vcpus']} vCPU {mib(v['ram_mb'])} {gib(v['disk_gb'])}"),
        (f"{cur}/h", lambda v: f"{v['per_hour']:.4f}"),
        (f"{cur}/month", lambda v: f"{v['per_month']:.2f}"),
        ("AWS USD/h", lambda v: _cloud(v, "aws")),
        ("AZURE USD/h", lambda v: _cloud(v, "azure")),
        ("GCP USD/h", lambda v: _cloud(v, "gcp")),
    ]
    print_list(r, columns, as_json=as_json, empty="No VMs.")
    if as_json:
        return
    out.print(f"total: {_money(r['per_hour'], cur)} per hour, {_money(r['per_month'], cur)} per month")
    for provider, total in r["clouds"].items():
        unmatched = f" ({total['unmatched']} VMs fit no shape)" if total["unmatched"] else ""
        out.print(f"{provider}: {_money(total['per_month'], 'USD')} per month for the compute{unmatched}")
    info(r["note"])


@cost_app.command("rightsizing")
def cost_rightsizing(
    ctx: typer.Context,
    tenant: str | None = TENANT,
    window: str = WINDOW,
    vm: list[str] | None = VMS,
    as_json: bool = JSON,
) -> None:
    """Over- and under-sized VMs by p95 CPU and memory, the flavor that fits, the monthly saving."""
    client = client_of(ctx)
    params = {"tenant_id": tenant_id(client, tenant) if tenant else None, "window": window, "vm_id": vm}
    with cli_options(TENANT_OPTION):
        r = client.get("/v1/cost/rightsizing", **params)
    columns: list[Column] = [
        ("NAME", "name"),
        ("STATUS", "status"),
        ("SHAPE", lambda v: f"{v['vcpus']} vCPU {mib(v['ram_mb'])}"),
        ("P95 CPU", lambda v: "-" if v["cpu_p95_cores"] is None else f"{v['cpu_p95_cores']:.2f}"),
        ("P95 RAM", lambda v: "-" if v["memory_p95_mb"] is None else mib(round(v["memory_p95_mb"]))),
        ("FLAVOR", lambda v: v["flavor"] or "-"),
        (f"SAVES {r['currency']}/month", lambda v: f"{v['saving_per_month']:.2f}"),
    ]
    print_list(r, columns, as_json=as_json, empty="No running VMs.")
    if not as_json:
        out.print(f"following every recommendation: {_money(r['saving_per_month'], r['currency'])} a month")


@cost_app.command("budget-check")
def cost_budget_check(  # noqa: PLR0913 - the shape asked about
    ctx: typer.Context,
    vcpus: int = typer.Option(..., "--vcpus", min=1),
    ram_mb: int = typer.Option(..., "--ram-mb", min=1),
    disk_gb: int = typer.Option(0, "--disk-gb", min=0),
    count: int = typer.Option(1, "--count", "-n", min=0),
    max_per_hour: float | None = typer.Option(None, "--max-per-hour", help="the maximum cost per hour"),
    tenant: str | None = TENANT,
    as_json: bool = JSON,
) -> None:
    """Whether COUNT more VMs of this shape keep the tenant within its budget (exit 1 when not)."""
    client = client_of(ctx)
    r = client.get(
        "/v1/cost/budget-check",
        vcpus=vcpus,
        ram_mb=ram_mb,
        disk_gb=disk_gb,
        count=count,
        max_cost_per_hour=max_per_hour,
        tenant_id=tenant_id(client, tenant) if tenant else None,
    )
    print_detail(r if as_json else {"ok": r["ok"], "reason": r["reason"], **r["numbers"]}, as_json=as_json)
    if not r["ok"]:
        raise typer.Exit(1)


@cost_app.command("roi")
def cost_roi(
    trace: Path = typer.Argument(..., help="CSV timestamp,value (value: load units), as the replay reads"),
    capacity_per_vm: float = typer.Option(..., "--capacity-per-vm", help="load one VM carries at 100 %"),
    price: float = typer.Option(..., "--price-per-vm-hour", help="what one VM-hour costs"),
    target_util: float = typer.Option(1.0, "--target-util", help="the utilisation each VM is run at"),
    min_vms: int = typer.Option(1, "--min-vms", min=0),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Scaling to each step's need against static provisioning for the peak, on a load trace."""
    try:
        step_s, load = read_trace(trace)
    except (ValueError, KeyError, OSError) as exc:
        raise CliError(f"{trace}: {exc}") from None
    r = roi_of(load, step_s, capacity_per_vm, price, target_util, min_vms=min_vms)
    result = {
        "steps": len(load),
        "step_s": step_s,
        **{f"static_{k}": v for k, v in vars(r.static).items() if k != "name"},
        **{f"scaled_{k}": v for k, v in vars(r.scaled).items() if k != "name"},
        "saving": r.saving,
        "saving_share": r.saving_share,
    }
    if as_json:
        print(json.dumps(result))
        return
    print_detail({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}, as_json=False)


@cost_app.command("group-roi")
def cost_group_roi(
    ctx: typer.Context,
    vm: list[str] = typer.Option(..., "--vm", help="a VM id of the group (repeat)"),
    window: str = WINDOW,
    target_util: float = typer.Option(0.6, "--target-util", help="how busy each VM is run"),
    tenant: str | None = TENANT,
    as_json: bool = JSON,
) -> None:
    """What scaling these VMs to their CPU load would have saved over the window, against running
    the peak's VMs throughout."""
    client = client_of(ctx)
    r = client.get(
        "/v1/cost/roi",
        vm_id=vm,
        window=window,
        target_util=target_util,
        tenant_id=tenant_id(client, tenant) if tenant else None,
    )
    if as_json:
        print_json(r)
        return
    flat = {k: v for k, v in r.items() if not isinstance(v, dict)}
    for side in ("static", "scaled"):
        flat |= {f"{side}_{k}": v for k, v in r[side].items()}
    print_detail(flat, as_json=False)


@capacity_app.command("forecast")
def capacity_forecast(  # noqa: PLR0913 - the what-if's questions
    ctx: typer.Context,
    horizon_days: float = typer.Option(90, "--horizon-days"),
    add_hosts: int = typer.Option(0, "--add-hosts", help="what if this many hosts join"),
    host_cpus: int = typer.Option(0, "--host-cpus"),
    host_ram_mb: int = typer.Option(0, "--host-ram-mb"),
    host_disk_gb: int = typer.Option(0, "--host-disk-gb"),
    aggregate: str | None = typer.Option(None, "--aggregate", help="the aggregate they join"),
    tenant: str | None = typer.Option(None, "--tenant", "-t", help="what if this tenant grows"),
    growth: float = typer.Option(0, "--growth", help="the tenant's growth, % a month"),
    as_json: bool = JSON,
) -> None:
    """When each host group runs out of vCPUs, RAM and disk and each subnet of addresses (admins)."""
    client = client_of(ctx)
    r = client.get(
        "/v1/capacity/forecast",
        horizon_days=horizon_days,
        add_hosts=add_hosts,
        host_cpus=host_cpus,
        host_ram_mb=host_ram_mb,
        host_disk_gb=host_disk_gb,
        aggregate=aggregate,
        tenant_id=tenant_id(client, tenant) if tenant else None,
        growth_pct_per_month=growth,
    )
    if as_json:
        print_json(r)
        return
    rows = [{"group": g["name"], "bottleneck": g["bottleneck"], **p} for g in r["groups"] for p in g["pools"]]
    columns: list[Column] = [
        ("GROUP", "group"),
        ("RESOURCE", lambda p: p["resource"] + (" *" if p["resource"] == p["bottleneck"] else "")),
        ("USED / CAPACITY", lambda p: f"{p['used']:g} / {p['capacity']:g} {p['unit']}"),
        ("%", lambda p: f"{100 * p['utilisation']:.0f}"),
        ("RUNS OUT", lambda p: _day(p["exhausted_expected"])),
        ("EARLIEST", lambda p: _day(p["exhausted_earliest"])),
        ("LATEST", lambda p: _day(p["exhausted_latest"])),
    ]
    print_list({"items": rows}, columns, as_json=False, empty="No hosts or subnets.")
    info(f"* the group's bottleneck; '-': not within {r['horizon_hours'] // 24} days")


def _day(value: str | None) -> str:
    return "-" if value is None else value[:16].replace("T", " ")
