"""The parts of a runbook step: hooks, health checks, network mapping, removing a VM made by a run.

Hooks run on the control plane (where the task runs), before or after a step: a command (argv, no
shell; platform admins only, checked when the runbook is written) or an HTTP webhook (POST of the
step's context as JSON). Their output is kept in the task. A failing hook fails the step unless it
says ``on_failure: continue``. Health checks: the VM's console shows a marker (read by its host's
agent), or a TCP port answers (from the control plane), or the VM runs; each with a timeout.

Webhooks and TCP checks leave from the control plane's network, so both pass the egress guard
(``novacron.netguard``) for everyone: checked when the runbook is written, checked again and pinned
to the checked address when they run, and their failures say nothing a port scanner could use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from novacron import netguard
from novacron.agent.protocol import ConsoleRead, WaitConsole, WaitState
from novacron.compute import hostops
from novacron.db.models import VM, Project
from novacron.identity.principal import Principal
from novacron.network import service as network_service
from novacron.network.sync import syncing_vm
from novacron.tasks.runner import StepFailed

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from novacron.context import Context
    from novacron.db.models import Task

log = logging.getLogger(__name__)
OUTPUT_MAX = 4000
DEFAULT_HOOK_TIMEOUT_S = 60.0
DEFAULT_HEALTH_TIMEOUT_S = 300.0
#: what a webhook that could not be reached says, whatever the cause (the server log has it)
WEBHOOK_FAILED = "the webhook could not be reached"


async def _command(hook: dict[str, Any], env: dict[str, str], timeout: float) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        *hook["command"], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL, env={**os.environ, **env},
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"ok": False, "exit_code": None, "output": f"timed out after {timeout:g}s"}
    return {"ok": proc.returncode == 0, "exit_code": proc.returncode, "output": out.decode(errors="replace")}


def hook_url_aad(runbook_id: str) -> str:
    """What a runbook's webhook URLs are bound to when sealed (its task plans copy them sealed)."""
    return f"dr_runbooks.steps.hooks.url:{runbook_id}"


def map_hook_urls(steps: list[dict[str, Any]], fn: Callable[[str], str]) -> list[dict[str, Any]]:
    """``steps`` (of a runbook or a task's plan) with every webhook URL passed through ``fn``.

    A webhook URL is a credential as often as not (a token in its query or path, ``user:pw@``):
    it is stored sealed, opened to call it and to show it to the runbook's readers."""

    def hooks(step: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**h, "url": fn(str(h["url"]))} if h.get("url") else h for h in step["hooks"]]

    return [{**step, "hooks": hooks(step)} if step.get("hooks") else step for step in steps]


def refused_target(steps: list[dict[str, Any]], policy: netguard.EgressPolicy) -> tuple[str, str] | None:
    """The first webhook URL or TCP check target the egress guard refuses, as (field, reason)."""
    for n, step in enumerate(steps):
        for m, hook in enumerate(step.get("hooks") or []):
            if hook.get("url"):
                try:
                    netguard.check_url(str(hook["url"]), policy)
                except netguard.EgressDenied as exc:
                    return f"steps.{n}.hooks.{m}.url", str(exc)
        health = step.get("health") or {}
        if health.get("kind") == "tcp":
            try:
                netguard.check_host(str(health["address"]), int(health["port"]), policy)
            except netguard.EgressDenied as exc:
                return f"steps.{n}.health.address", str(exc)
    return None


async def _webhook(
    hook: dict[str, Any], env: dict[str, str], timeout: float, policy: netguard.EgressPolicy
) -> dict[str, Any]:
    try:
        async with netguard.request("POST", str(hook["url"]), policy, json=env, timeout=timeout) as r:
            text = (await r.aread()).decode(errors="replace")
    except netguard.EgressDenied as exc:
        return {"ok": False, "status": None, "output": f"refused: {exc}"}
    except (netguard.FetchFailed, httpx.HTTPError) as exc:
        # one message for refused, reset, timed out: the hook's output must not scan ports
        log.warning("webhook %s failed: %r", netguard.safe_url(str(hook["url"])), exc)
        return {"ok": False, "status": None, "output": WEBHOOK_FAILED}
    return {"ok": r.is_success, "status": r.status_code, "output": text}


async def run_hooks(
    hooks: list[dict[str, Any]],
    when: str,
    env: dict[str, str],
    policy: netguard.EgressPolicy,
    open_url: Callable[[str], str] = str,
) -> list[dict[str, Any]]:
    """Run the step's ``when`` (before/after) hooks in order; each result keeps its output.
    ``open_url`` opens a sealed webhook URL (:func:`hook_url_aad`)."""
    results = []
    for hook in (h for h in hooks if h.get("when", "before") == when):
        if hook.get("url"):
            hook = {**hook, "url": open_url(str(hook["url"]))}
        started = time.monotonic()
        timeout = float(hook.get("timeout_s") or DEFAULT_HOOK_TIMEOUT_S)
        hook_env = {**env, "NOVACRON_HOOK": when}
        if hook.get("command"):
            outcome = await _command(hook, hook_env, timeout)
        else:
            outcome = await _webhook(hook, hook_env, timeout, policy)
        outcome["output"] = outcome["output"][-OUTPUT_MAX:]
        # the result is kept in the task: the URL as it may be shown (no password, no query)
        shown = {"url": netguard.safe_url(hook["url"])} if hook.get("url") else {}
        what = {"command": hook["command"]} if hook.get("command") else shown
        results.append(
            {"when": when, **what, **outcome, "duration_s": round(time.monotonic() - started, 2),
             "on_failure": hook.get("on_failure", "fail")}
        )  # fmt: skip
    return results


def failed_hook(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((r for r in results if not r["ok"] and r["on_failure"] != "continue"), None)


async def tcp_check(address: str, port: int, deadline: float, policy: netguard.EgressPolicy) -> None:
    """Until ``deadline``: connect to ``address:port`` through the egress guard (resolved and
    checked at each try, connected to the checked address)."""
    while True:
        try:
            await netguard.open_tcp(address, port, policy, 5)
        except netguard.EgressDenied as exc:
            raise StepFailed(f"{address}:{port} is refused: {exc}") from None
        except netguard.FetchFailed:
            if time.monotonic() > deadline:
                raise StepFailed(f"{address}:{port} did not answer") from None
            await asyncio.sleep(1)
        else:
            return


def console_end(ctx: Context, host_id: str, vm_id: str) -> int:
    """Where the VM's console log ends now: a marker counts only when printed after this."""
    out = hostops.call_blocking(ctx, host_id, ConsoleRead(0, 0), vm_id, 30)
    return int(out["next_offset"])


async def _console_since(
    ctx: Context, host_id: str, vm_id: str, marker: str, offset: int, deadline: float
) -> None:
    window = ""
    while True:
        out = await asyncio.to_thread(hostops.call_blocking, ctx, host_id, ConsoleRead(offset), vm_id, 30)
        window = window[-len(marker) :] + str(out["text"])  # a marker may straddle two reads
        offset = int(out["next_offset"])
        if marker in window:
            return
        if time.monotonic() > deadline:
            raise StepFailed(f"{marker!r} did not appear on the console")
        await asyncio.sleep(1)


async def check_health(
    ctx: Context,
    task: Task,
    host_id: str,
    vm_id: str,
    check: dict[str, Any],
    key: str,
    since: int | None = None,
) -> dict[str, Any]:
    """Wait until the VM is healthy by ``check`` ({kind: console|tcp|running, ...}, timeout_s).

    ``since``: the console offset the marker must come after (a VM that booted before has it)."""
    kind = check.get("kind", "running")
    timeout = float(check.get("timeout_s") or DEFAULT_HEALTH_TIMEOUT_S)
    started = time.monotonic()
    try:
        if kind == "console" and since is not None:
            await _console_since(ctx, host_id, vm_id, str(check["marker"]), since, started + timeout)
        elif kind == "console":
            wait = WaitConsole(str(check["marker"]), timeout)
            await hostops.call(ctx, host_id, task, wait, vm_id, timeout + 60, f"h{key}")
        elif kind == "tcp":
            policy = netguard.EgressPolicy.from_settings(ctx.settings)
            await tcp_check(str(check["address"]), int(check["port"]), started + timeout, policy)
        else:
            wanted = WaitState(("running",), timeout)
            await hostops.call(ctx, host_id, task, wanted, vm_id, timeout + 60, f"h{key}")
    except StepFailed as exc:
        raise StepFailed(f"health check {kind} failed within {timeout:g}s: {exc}") from exc
    return {"kind": kind, "ok": True, "after_s": round(time.monotonic() - started, 1)}


def map_ports(
    session: Session, runbook_tenant: str, vm: VM, source_vm: VM | None, network_map: dict[str, str],
    test_network: str | None, dry_run: bool,
) -> list[dict[str, str]]:  # fmt: skip
    """Give the recovered VM one port per NIC of the source VM, on the mapped network.

    A dry run puts every NIC on the runbook's test network, or gives the VM no NIC at all."""
    from novacron.db.models import Network

    sources = network_service.nics_of(session, source_vm.id) if source_vm is not None else []
    wanted = []
    for nic in sources:
        net = test_network if dry_run else network_map.get(nic["network_id"], nic["network_id"])
        if net is not None:
            wanted.append((nic["network_id"], net))
    if dry_run and test_network is None:
        vm.meta = {**vm.meta, "dr_isolated": "true"}
    project = session.get(Project, vm.project_id)
    assert project is not None
    system = Principal("dr", "dr-runbook", "system", runbook_tenant, frozenset())
    mapped = []
    with syncing_vm(session, vm):
        for i, (source_net, net_id) in enumerate(wanted):
            network = session.get(Network, net_id)
            if network is None:
                raise StepFailed(f"network {net_id} (mapped from {source_net}) no longer exists")
            spec = network_service.NewPort(
                name=f"{vm.name}-{i}", vm_id=vm.id, position=i, field=f"network_map.{source_net}", part=""
            )
            network_service.create_port(session, system, project, network, spec)
            mapped.append({"from": source_net, "to": net_id})
    return mapped
