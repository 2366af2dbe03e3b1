"""``novacron cluster rebalance``: even out host load with live migrations, after a preview."""

from __future__ import annotations

from typing import Any

import typer

from novacron.cli.client import Client, CliError
from novacron.cli.common import JSON, client_of
from novacron.cli.output import Column, out, print_json, print_table
from novacron.cli.watch import watch_task

app = typer.Typer(no_args_is_help=True)


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def _pair(h: dict[str, Any], key: str) -> str:
    b, a = h["before"], h["after"]
    if key == "vms":
        return str(b["vms"]) if b["vms"] == a["vms"] else f"{b['vms']} → {a['vms']}"
    return _pct(b[key]) if b[key] == a[key] else f"{_pct(b[key])} → {_pct(a[key])}"


HOST_COLUMNS: list[Column] = [
    ("HOST", "name"),
    *((key.upper(), lambda h, key=key: _pair(h, key)) for key in ("vms", "cpu", "vcpu", "ram", "load")),
]
MOVE_COLUMNS: list[Column] = [("VM", "vm_name"), ("FROM", "from_name"), ("TO", "to_name"), ("WHY", "reason")]


def print_plan(plan: dict[str, Any]) -> None:
    title = "Hosts before → after (cpu: measured use; vcpu, ram: allocated; load: the largest)"
    print_table(plan["hosts"], HOST_COLUMNS, title=title)
    out.print(
        f"imbalance {plan['imbalance_before']:.3f} → {plan['imbalance_after']:.3f}; "
        f"spread (max-min load) {_pct(plan['spread_before'])} → {_pct(plan['spread_after'])}"
    )
    if plan["skipped"]:
        out.print("[dim]left alone: " + ", ".join(f"{n} {why}" for why, n in plan["skipped"].items()) + "[/]")
    if not plan["moves"]:
        out.print(f"[green]Balanced: no move would help (threshold {_pct(plan['threshold'])}).[/]")
        return
    print_table(plan["moves"], MOVE_COLUMNS, title=f"{len(plan['moves'])} live migration(s)")


def _follow(client: Client, answer: dict[str, Any], *, show: bool) -> list[str]:
    """Watch each started migration to its end; the failed ones, labelled."""
    failed = []
    for task_id, move in zip(answer["task_ids"], answer["moves"], strict=True):
        label = f"{move['vm_name']}: {move['from_name']} → {move['to_name']}"
        try:
            watch_task(client, task_id, label=label, show=show)
        except CliError as exc:
            failed.append(f"{label}: {exc.message}")
    return failed


@app.command("rebalance")
def rebalance(
    ctx: typer.Context,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="show the plan and the cluster after it; change nothing"
    ),
    apply: bool = typer.Option(False, "--apply", help="apply the plan (the default without --dry-run)"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
    max_moves: int = typer.Option(10, "--max-moves", min=1, max=100, help="at most this many migrations"),
    threshold: float | None = typer.Option(
        None,
        "--threshold",
        min=0.001,
        max=1.0,
        help="move only to hosts this much less loaded (0.1 = 10 points)",
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="follow the migrations until done"),
    as_json: bool = JSON,
) -> None:
    """Plan live migrations that even out CPU and RAM load across hosts, show them, and apply them."""
    if dry_run and apply:
        raise CliError("--dry-run and --apply exclude each other")
    client = client_of(ctx)
    body: dict[str, Any] = {"dry_run": True, "max_moves": max_moves}
    if threshold is not None:
        body["threshold"] = threshold
    plan = client.post("/v1/cluster/rebalance", body)
    if dry_run or not plan["moves"]:
        if as_json:
            print_json(plan)
        else:
            print_plan(plan)
        return
    if not as_json:
        print_plan(plan)
    if not yes and not typer.confirm(f"Start these {len(plan['moves'])} live migration(s)?"):
        raise typer.Exit(1)
    # exactly the moves shown: the server re-checks each against the cluster as it is now
    body.update(
        dry_run=False, moves=[{"vm": m["vm"], "from": m["from"], "to": m["to"]} for m in plan["moves"]]
    )
    answer = client.post("/v1/cluster/rebalance", body)
    failed = _follow(client, answer, show=not as_json) if wait else []
    if as_json:
        print_json(answer)
    elif wait:
        out.print(f"{len(answer['task_ids']) - len(failed)} of {len(answer['task_ids'])} migration(s) done")
    else:
        out.print("started: " + ", ".join(answer["task_ids"]) + " (novacron task watch ID)")
    if failed:
        raise CliError("some migrations failed; those VMs still run where they were:\n" + "\n".join(failed))
