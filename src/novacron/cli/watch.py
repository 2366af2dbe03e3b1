"""Following a durable task until it ends: a progress bar over its steps."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from novacron.cli.client import Client, CliError
from novacron.cli.output import err, info, print_json
from novacron.sdk.errors import WaitTimeout
from novacron.sdk.follow import wait_task

TERMINAL = ("succeeded", "failed", "cancelled")
POLL_S = 0.5


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}"


def transfer_label(result: object) -> str:
    """``RAM 12.0/256.0 MiB, disk 3.0/40.0 MiB`` (or ``vdb, read 12.0 MiB``) from a running task's
    ``result.progress``."""
    detail = result.get("progress") if isinstance(result, dict) else None
    if not isinstance(detail, dict):
        return ""
    parts = []
    if ram := detail.get("ram"):
        parts.append(f"RAM {_mib(ram['total'] - ram['remaining'])}/{_mib(ram['total'])} MiB")
    disk = detail.get("disk")
    if isinstance(disk, dict):  # a migration's disk mirror
        parts.append(f"disk {_mib(disk['offset'])}/{_mib(disk['len'])} MiB")
    elif isinstance(disk, str):  # a backup or restore names the disk it is on
        parts.append(disk)
    if "bytes_read" in detail:  # a backup: what QEMU read, then chunks stored
        parts.append(f"read {_mib(detail['bytes_read'])} MiB")
        if "chunks_done" in detail:
            parts.append(f"chunks {detail['chunks_done']}/{detail['chunks_to_do']}")
    if "bytes_written" in detail:  # a restore
        parts.append(f"written {_mib(detail['bytes_written'])} MiB")
    return ", ".join(parts)


def step_label(task: dict[str, Any]) -> str:
    """``launch (4/5)`` for a running task (with its transfer, if any), else its state."""
    steps: list[str] = task.get("steps") or []
    index = int(task.get("step_index") or 0)
    state = str(task.get("state") or "")
    if state == "running" and steps:
        current = task.get("current_step") or steps[min(index, len(steps) - 1)]
        label = f"{current} ({min(index + 1, len(steps))}/{len(steps)})"
        transfer = transfer_label(task.get("result"))
        return f"{label} {transfer}" if transfer else label
    return state


def task_failed(task: dict[str, Any]) -> CliError:
    what = f"{task.get('kind', 'task')} {task.get('resource_id', '')}".strip()
    reason = task.get("error") or "no error message recorded"
    return CliError(
        f"task {task.get('id')} ({what}) {task.get('state')}: {reason}",
        hint=f"Details: novacron task show {task.get('id')}",
    )


def watch_task(
    client: Client, task_id: str, *, label: str = "", timeout_s: float | None = None, show: bool = True
) -> dict[str, Any]:
    """Follow the task until it is terminal. Returns it when it succeeded, raises ``CliError`` otherwise."""
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("[dim]{task.fields[step]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not show,
    )
    first: dict[str, Any] = client.get(f"/v1/tasks/{task_id}")
    title = escape(label or f"{first.get('kind', 'task')} {first.get('resource_id', '')}".strip())
    try:
        with progress:
            bar = progress.add_task(title, total=100, step=step_label(first))

            def show_progress(task: dict[str, Any]) -> None:
                done = 100 if task.get("state") == "succeeded" else int(task.get("progress") or 0)
                progress.update(bar, completed=done, step=escape(step_label(task)))

            # the SDK's wait: the task's events as they come (polling without event:read)
            with client.translated():
                task = wait_task(
                    client.core,
                    task_id,
                    on_progress=show_progress,
                    timeout=timeout_s or None,
                    raise_on_failure=False,
                )
    except WaitTimeout as exc:
        state = (exc.last or {}).get("state")
        raise CliError(
            f"task {task_id} is still {state} after {timeout_s:.0f} s",
            hint=f"It goes on in the background: novacron task watch {task_id}",
        ) from None
    except KeyboardInterrupt:
        raise CliError(
            f"stopped watching task {task_id}; it goes on in the background",
            hint=f"Resume with: novacron task watch {task_id}",
            exit_code=130,
        ) from None
    if task.get("state") != "succeeded":
        raise task_failed(task)
    return task


def follow_accepted(
    client: Client,
    accepted: dict[str, Any],
    label: str,
    *,
    wait: bool,
    as_json: bool,
    timeout_s: float | None,
) -> bool:
    """After a 202: without ``wait``, print the acceptance (how to follow it) and answer False; with
    it, follow the task with its progress bar (none under ``--json``) and answer True once it succeeded."""
    task_id = accepted["task_id"]
    if not wait:
        if as_json:
            print_json(accepted)
        else:
            info(f"{label}: accepted as task {task_id} (follow it with: novacron task watch {task_id})")
        return False
    watch_task(client, task_id, label=label, timeout_s=timeout_s, show=not as_json)
    return True
