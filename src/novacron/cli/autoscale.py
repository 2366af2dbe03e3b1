"""``novacron autoscale replay``: a load trace through a simulated group and a policy, offline."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from novacron.autoscaling.replay import POLICIES, ReplayConfig, read_trace, replay
from novacron.cli.client import CliError
from novacron.cli.output import out, print_json

app = typer.Typer(no_args_is_help=True)


@app.command("replay")
def replay_command(  # noqa: PLR0913 - one option per figure of the simulated group
    trace: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV `timestamp,value` (load units)"),
    policy: str = typer.Option("predictive", "--policy", help="hpa, target or predictive"),
    capacity_per_vm: float = typer.Option(..., "--capacity-per-vm", help="load units one VM serves at 100 %"),
    boot_delay: float = typer.Option(60.0, "--boot-delay", help="seconds from launch until a VM serves"),
    target_util: float = typer.Option(0.6, "--target-util", help="target utilisation of a VM, in (0, 1]"),
    min_size: int = typer.Option(1, "--min", min=1, help="smallest group size"),
    max_size: int = typer.Option(10_000, "--max", min=1, help="largest group size"),
    interval: float = typer.Option(15.0, "--interval", help="seconds between decisions (HPA syncs every 15)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object"),
) -> None:
    """Replay a load trace through a policy: VM-hours, SLO-violation minutes and scaling actions.

    Runs locally (no server). A minute violates the SLO when the load exceeds the serving VMs'
    capacity x the target utilisation; booting VMs are paid for but do not serve."""
    if policy not in POLICIES:
        raise CliError(f"--policy must be one of {', '.join(POLICIES)}")
    try:
        step_s, loads = read_trace(trace)
        config = ReplayConfig(
            policy=policy,
            capacity_per_vm=capacity_per_vm,
            boot_delay_s=boot_delay,
            target_util=target_util,
            min_size=min_size,
            max_size=max_size,
            interval_s=interval,
        )
        if as_json or policy != "predictive":
            result = replay(loads, step_s, config)
        else:  # the predictive replay refits daily: show how far it is
            with Progress(
                TextColumn("replaying"), BarColumn(), TimeRemainingColumn(), console=out, transient=True
            ) as progress:
                bar = progress.add_task("replay", total=len(loads))
                result = replay(loads, step_s, config, lambda _i: progress.advance(bar))
    except (ValueError, KeyError) as exc:
        raise CliError(f"{trace}: {exc}") from None
    if as_json:
        print_json(result.as_dict())
        return
    span = f"{result.hours:.1f} h of {trace.name} ({result.steps} samples, step {result.step_s:g} s)"
    out.print(f"[bold]{policy}[/] over {span}")
    out.print(f"VM-hours            {result.vm_hours:.2f}")
    out.print(f"violation minutes   {result.violation_minutes:.1f}")
    out.print(f"scaling actions     {result.actions}")
    out.print(f"peak VMs            {result.peak_vms}")
    if result.fits:
        models = ", ".join(f"{name} x{count}" for name, count in sorted(result.models.items()))
        out.print(f"forecast fits       {result.fits} in {result.fit_seconds:.1f} s ({models})")
