"""``novacron probe|slo ...``: synthetic probes into tenant networks, SLOs, the monthly SLA report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from novacron.cli.common import CURSOR, JSON, LIMIT, client_of
from novacron.cli.output import Column, info, print_detail, print_json, print_list

probe_app = typer.Typer(no_args_is_help=True)
slo_app = typer.Typer(no_args_is_help=True)


def _last(p: dict[str, Any]) -> str:
    last = p.get("last_result")
    if not last:
        return "-"
    return f"up {last['duration_s'] * 1000:.1f} ms" if last["success"] else f"DOWN: {last['error']}"


@probe_app.command("create")
def probe_create(  # noqa: PLR0913 - one option per field of the probe
    ctx: typer.Context,
    name: str = typer.Argument(...),
    vm: str = typer.Option(..., "--vm", help="the VM probed (name or id)"),
    kind: str = typer.Option("tcp", "--kind", help="icmp, tcp, http or https"),
    port: int | None = typer.Option(None, "--port", help="TCP port (tcp, http, https)"),
    path: str = typer.Option("/", "--path", help="http(s): the path requested"),
    expect_status: int = typer.Option(200, "--expect-status"),
    body_contains: str | None = typer.Option(None, "--body-contains"),
    interval: int = typer.Option(10, "--interval", help="seconds between runs"),
    timeout: float = typer.Option(2.0, "--timeout", help="seconds a run may take"),
    insecure: bool = typer.Option(False, "--insecure", help="https: do not verify the certificate"),
    server_name: str | None = typer.Option(
        None, "--server-name", help="https: the name the certificate is for"
    ),
    ca_file: Path | None = typer.Option(None, "--ca-file", help="https: CA certificates (PEM) to trust"),
    as_json: bool = JSON,
) -> None:
    """Probe a VM's port from inside its tenant network."""
    body = {
        "name": name,
        "vm_id": vm,
        "kind": kind,
        "target_port": port,
        "path": path,
        "expected_status": expect_status,
        "body_contains": body_contains,
        "interval_s": interval,
        "timeout_s": timeout,
    }
    if insecure:
        body["tls_verify"] = False
    if server_name:
        body["tls_server_name"] = server_name
    if ca_file is not None:
        body["tls_ca_pem"] = ca_file.read_text()
    print_detail(client_of(ctx).post("/v1/probes", body), as_json=as_json)


@probe_app.command("list")
def probe_list(
    ctx: typer.Context, limit: int | None = LIMIT, cursor: str | None = CURSOR, as_json: bool = JSON
) -> None:
    """List probes with their last result."""
    page = client_of(ctx).list_all("/v1/probes", limit=limit, cursor=cursor)
    columns: list[Column] = [
        ("NAME", "name"),
        ("ID", "id"),
        ("KIND", "kind"),
        ("TARGET", lambda p: p["address"] + (f":{p['target_port']}" if p["target_port"] else "")),
        ("EVERY", lambda p: f"{p['interval_s']}s"),
        ("LAST", _last),
    ]
    print_list(page, columns, as_json=as_json, empty="No probes.")


@probe_app.command("show")
def probe_show(
    ctx: typer.Context, probe: str = typer.Argument(..., help="name or id"), as_json: bool = JSON
) -> None:
    """Show a probe and its last result."""
    print_detail(client_of(ctx).get(f"/v1/probes/{probe}"), as_json=as_json)


@probe_app.command("delete")
def probe_delete(ctx: typer.Context, probe: str = typer.Argument(..., help="name or id")) -> None:
    """Delete a probe no SLO measures."""
    client_of(ctx).delete(f"/v1/probes/{probe}")
    info(f"Deleted probe {probe}.")


@slo_app.command("create")
def slo_create(  # noqa: PLR0913 - one option per field of the SLO
    ctx: typer.Context,
    name: str = typer.Argument(...),
    probe: str = typer.Option(..., "--probe", help="the probe measured (name or id)"),
    target: float = typer.Option(..., "--target", help="percent, e.g. 99.9"),
    latency: float | None = typer.Option(
        None, "--latency", help="a latency SLO: seconds a good run takes at most"
    ),
    window_days: int = typer.Option(30, "--window-days"),
    as_json: bool = JSON,
) -> None:
    """Create an SLO on a probe's success (or, with --latency, its fast successes)."""
    body = {
        "name": name,
        "probe_id": probe,
        "target_percent": target,
        "indicator": "latency" if latency is not None else "success",
        "latency_threshold_s": latency,
        "window_days": window_days,
    }
    print_detail(client_of(ctx).post("/v1/slos", body), as_json=as_json)


@slo_app.command("list")
def slo_list(
    ctx: typer.Context, limit: int | None = LIMIT, cursor: str | None = CURSOR, as_json: bool = JSON
) -> None:
    """List SLOs."""
    page = client_of(ctx).list_all("/v1/slos", limit=limit, cursor=cursor)
    columns: list[Column] = [
        ("NAME", "name"),
        ("ID", "id"),
        ("INDICATOR", "indicator"),
        ("TARGET %", "target_percent"),
        ("WINDOW", lambda s: f"{s['window_days']}d"),
        ("PROBE", "probe_id"),
    ]
    print_list(page, columns, as_json=as_json, empty="No SLOs.")


@slo_app.command("show")
def slo_show(
    ctx: typer.Context, slo: str = typer.Argument(..., help="name or id"), as_json: bool = JSON
) -> None:
    """Show an SLO and its burn-rate alert rules."""
    print_detail(client_of(ctx).get(f"/v1/slos/{slo}"), as_json=as_json)


@slo_app.command("status")
def slo_status(
    ctx: typer.Context, slo: str = typer.Argument(..., help="name or id"), as_json: bool = JSON
) -> None:
    """The SLI over the window, the error budget left and the burn rate now."""
    status = client_of(ctx).get(f"/v1/slos/{slo}/status")
    if as_json:
        print_json(status)
        return

    def pct(value: float | None) -> str:
        return "no data" if value is None else f"{value * 100:.3f} %"

    typer.echo(f"SLI {pct(status['sli'])}, budget left {pct(status['budget_remaining'])}")
    typer.echo(f"burn rate: {status['burn_rate_5m']} (5 min), {status['burn_rate_1h']} (1 h)")


@slo_app.command("delete")
def slo_delete(ctx: typer.Context, slo: str = typer.Argument(..., help="name or id")) -> None:
    """Delete an SLO (its probe stays)."""
    client_of(ctx).delete(f"/v1/slos/{slo}")
    info(f"Deleted SLO {slo}.")


@slo_app.command("report")
def slo_report(
    ctx: typer.Context,
    month: str = typer.Option(..., "--month", help="YYYY-MM (UTC)"),
    fmt: str = typer.Option("csv", "--format", help="csv or html"),
    tenant: str | None = typer.Option(None, "--tenant", help="administrators: the tenant reported"),
    output: Path | None = typer.Option(None, "--output", "-o", help="write to this file"),
) -> None:
    """The monthly SLA report: per SLO its target, achieved SLI, budget used and incidents."""
    params = {"month": month, "format": fmt, **({"tenant_id": tenant} if tenant else {})}
    text = client_of(ctx).send("GET", "/v1/slo-report", params=params).text
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        info(f"Wrote {output}.")
