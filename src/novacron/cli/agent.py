"""``novacron agent``: run this machine as a hypervisor host of a NovaCron cluster."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from pathlib import Path

import typer

from novacron.cli.output import err


def agent(
    server: str = typer.Option(..., "--server", help="the server's agent URL, e.g. https://10.0.0.1:8443"),
    join_token: str | None = typer.Option(None, "--join-token", help="from 'POST /v1/hosts/join-tokens'"),
    ca_fingerprint: str | None = typer.Option(None, "--ca-fingerprint", help="printed with the join token"),
    name: str = typer.Option(os.uname().nodename, "--name", help="this host's name in the cluster"),
    state_dir: Path = typer.Option(Path("/var/lib/novacron-agent"), "--state-dir", help="instances, sockets"),
    driver: str = typer.Option("qemu", "--driver", help="qemu, or simulated (scale simulation only)"),
) -> None:
    """Join this host to a NovaCron server and run its VMs (stays in the foreground)."""
    from novacron.agent.main import JoinFailed, run_agent
    from novacron.config import Settings
    from novacron.monitoring import logs, tracing
    from novacron.private import set_private_umask

    set_private_umask()  # disks, seeds, console logs, the credential: private to this account
    logs.configure(tracing.AGENT)  # JSON lines with the trace_id of the operation they were written in
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs whole URLs (tickets, tokens)
    base = Settings.from_env()
    settings = dataclasses.replace(
        base, state_dir=state_dir.resolve(), compute_driver=driver, host_name=name, embedded_agent=False
    )
    # no database here: an operation's spans travel to the control plane with its answer
    tracing.setup(tracing.AGENT, name, local=tracing.SpanBuffer(), otlp_endpoint=settings.otlp_endpoint)
    try:
        asyncio.run(run_agent(settings, server.rstrip("/"), name, join_token, ca_fingerprint))
    except JoinFailed as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    finally:
        tracing.shutdown()
