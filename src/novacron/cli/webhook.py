"""``novacron webhook create|list|show|update|pause|resume|rotate-secret|test|deliveries|retry|delete``.

A subscription's signing secret is printed once, when it is made or rotated: the receiver verifies
each message with it (Standard Webhooks: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).
"""

from __future__ import annotations

from typing import Any

import typer

from novacron.cli.common import JSON, client_of
from novacron.cli.output import Column, ago, human_time, out, print_detail, print_json, print_list

app = typer.Typer(no_args_is_help=True)

COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("URL", "url"),
    ("EVENTS", lambda w: ", ".join(w["event_types"])),
    ("STATE", lambda w: w["state"] + (f" ({w['paused_reason']})" if w["paused_reason"] else "")),
]
DELIVERY_COLUMNS: list[Column] = [
    ("ID", "id"),
    ("EVENT", "event_type"),
    ("STATE", "state"),
    ("ATTEMPTS", "attempts"),
    ("STATUS", lambda d: d["last_status"] or "-"),
    ("ERROR", lambda d: d["last_error"] or ""),
    ("WHEN", lambda d: ago(d["delivered_at"] or d["created_at"])),
    ("NEXT", lambda d: human_time(d["next_attempt_at"]) if d["next_attempt_at"] else ""),
]


def _print_secret(hook: dict[str, Any], as_json: bool, what: str) -> None:
    if as_json:
        print_json(hook)
        return
    out.print(
        f"webhook {hook['name']} ({hook['id']}) {what}: {hook['url']}, "
        f"events {', '.join(hook['event_types'])}"
    )
    out.print("signing secret (shown only now; the receiver verifies each message with it):")
    print(hook["secret"])


@app.command("create")
def create(  # noqa: PLR0913 - the subscription's fields
    ctx: typer.Context,
    name: str = typer.Argument(..., help="unique in your tenant, e.g. ops-chat"),
    url: str = typer.Option(..., "--url", help="where to POST the events (http or https)"),
    event: list[str] = typer.Option(..., "--event", "-e", help="event type or pattern: vm.* (repeat)"),
    resource_type: list[str] = typer.Option([], "--resource-type", help="only these resources (repeat)"),
    project: str | None = typer.Option(None, "--project", help="only this project's events"),
    secret: str | None = typer.Option(None, "--secret", help="your own whsec_ secret (default: made)"),
    as_json: bool = JSON,
) -> None:
    """Subscribe a URL to events; every message is signed with the secret printed now."""
    body = {
        "name": name,
        "url": url,
        "event_types": event,
        "resource_types": resource_type,
        "project": project,
    }
    if secret:
        body["secret"] = secret
    _print_secret(client_of(ctx).post("/v1/webhooks", body), as_json, "created")


@app.command("list")
def list_hooks(ctx: typer.Context, as_json: bool = JSON) -> None:
    """Your tenant's webhook subscriptions."""
    print_list(client_of(ctx).get("/v1/webhooks"), COLUMNS, as_json=as_json, empty="No webhooks.")


@app.command("show")
def show(ctx: typer.Context, webhook: str, as_json: bool = JSON) -> None:
    """One subscription (id or name): its URL, events, state and why it is paused."""
    print_detail(client_of(ctx).get(f"/v1/webhooks/{webhook}"), as_json=as_json)


@app.command("update")
def update(
    ctx: typer.Context,
    webhook: str,
    url: str | None = typer.Option(None, "--url"),
    event: list[str] = typer.Option([], "--event", "-e", help="replaces the event types (repeat)"),
    as_json: bool = JSON,
) -> None:
    """Change the URL or the event types."""
    body: dict[str, Any] = {"url": url} if url else {}
    if event:
        body["event_types"] = event
    print_detail(client_of(ctx).patch(f"/v1/webhooks/{webhook}", body), as_json=as_json)


@app.command("pause")
def pause(ctx: typer.Context, webhook: str) -> None:
    """Stop sending (events keep queueing, and are sent on resume)."""
    client_of(ctx).patch(f"/v1/webhooks/{webhook}", {"state": "paused"})
    out.print(f"paused {webhook}")


@app.command("resume")
def resume(ctx: typer.Context, webhook: str) -> None:
    """Send again, starting with what queued while paused."""
    client_of(ctx).patch(f"/v1/webhooks/{webhook}", {"state": "active"})
    out.print(f"resumed {webhook}")


@app.command("rotate-secret")
def rotate_secret(
    ctx: typer.Context,
    webhook: str,
    keep_previous_s: int = typer.Option(86400, "--keep-previous", help="seconds the old secret still signs"),
    as_json: bool = JSON,
) -> None:
    """A new signing secret; the previous one signs beside it for --keep-previous seconds."""
    hook = client_of(ctx).post(f"/v1/webhooks/{webhook}/rotate-secret", {"keep_previous_s": keep_previous_s})
    _print_secret(hook, as_json, "has a new secret")


@app.command("test")
def test(ctx: typer.Context, webhook: str) -> None:
    """Send a webhook.test message now; see it with 'novacron webhook deliveries'."""
    delivery = client_of(ctx).post(f"/v1/webhooks/{webhook}/test", {})
    out.print(f"queued {delivery['id']}")


@app.command("deliveries")
def deliveries(
    ctx: typer.Context,
    webhook: str,
    state: str | None = typer.Option(None, "--state", help="pending, succeeded or failed"),
    as_json: bool = JSON,
) -> None:
    """The delivery log, newest first: attempts, the receiver's status and the error."""
    data = client_of(ctx).get(f"/v1/webhooks/{webhook}/deliveries", state=state)
    print_list(data, DELIVERY_COLUMNS, as_json=as_json, empty="No deliveries yet.")


@app.command("retry")
def retry(ctx: typer.Context, webhook: str, delivery_id: str) -> None:
    """Send a failed delivery again now."""
    client_of(ctx).post(f"/v1/webhooks/{webhook}/deliveries/{delivery_id}/retry", {})
    out.print(f"queued {delivery_id} again")


@app.command("delete")
def delete(ctx: typer.Context, webhook: str) -> None:
    """Delete the subscription and its delivery log."""
    client_of(ctx).delete(f"/v1/webhooks/{webhook}")
    out.print(f"deleted {webhook}")
