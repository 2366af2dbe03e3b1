"""The scale task's side of lifecycle hooks: call each hook of a transition for a member, and wait.

For each hook, in name order: the action's token and deadline go on the member row first (state
``pending_launch`` / ``pending_terminate``), committed, so a server restarted mid-wait resumes the
same action (the same token, the same deadline; a delivery not yet made is made again). The event
is POSTed through the egress guard, signed as alert webhooks are (``notify.sign``: HMAC-SHA256 over
``<timestamp>.<body>`` in ``NovaCron-Signature``), with Standard-Webhooks' ``webhook-id`` and
``webhook-timestamp``; a refused connection or a 5xx is retried with backoff while the deadline
allows. The wait ends at the receiver's answer (``LifecycleHookService.complete``) or at the deadline
(the hook's ``default_result``). ``abandon`` stops the hooks left. Each outcome is a
``lifecycle_hook`` activity of the group: hook, result, by answer or by timeout, seconds waited,
delivery attempts.

Nothing here holds a transaction across the network or the wait: each read or write is its own
short session, and the wait is ``asyncio.sleep``, so other groups' tasks go on meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from novacron import events, netguard
from novacron.autoscaling.lifecycle import PENDING, hooks_of, signing_secret_aad, url_aad
from novacron.db.base import new_id, utcnow
from novacron.db.models import (
    VM,
    IPAllocation,
    Port,
    ScalingActivity,
    ScalingGroup,
    ScalingGroupMember,
    ScalingLifecycleHook,
)
from novacron.identity.encryption import encryption_for
from novacron.monitoring.alerting.notify import SIGNATURE_HEADER, sign

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from novacron.context import Context

log = logging.getLogger(__name__)

#: how often the wait looks for an answer
POLL_S = 0.25
#: delivery attempts, and the pause before each retry (doubling), all within the deadline
ATTEMPTS = 4
BACKOFF_S = 0.5
ATTEMPT_TIMEOUT_S = 10.0


def _addresses(s: Session, vm_id: str) -> list[str]:
    stmt = (
        select(IPAllocation.ip)
        .join(Port, Port.id == IPAllocation.port_id)
        .where(Port.vm_id == vm_id)
        .order_by(Port.created_at, IPAllocation.ip)
    )
    return list(s.scalars(stmt))


def _start(s: Session, member: ScalingGroupMember, hook: ScalingLifecycleHook) -> None:
    """Begin the action of ``hook`` on the member, unless it is the one already under way (a resume)."""
    member.state = PENDING[hook.transition]
    if member.action.get("hook_id") == hook.id and member.action_token and not member.action.get("outcome"):
        return
    now = utcnow()
    member.action_token = secrets.token_urlsafe(24)
    member.action_deadline = now + timedelta(seconds=hook.timeout_s)
    member.action = {
        "done": dict(member.action.get("done") or {}),
        "hook_id": hook.id,
        "hook": hook.name,
        "transition": hook.transition,
        "started_at": now.isoformat(),
        "delivered": False,
        "attempts": 0,
    }
    group = s.get(ScalingGroup, member.group_id)
    if group is not None:  # the pages that show the member follow the event
        events.publish(
            s, "scaling_group.lifecycle_action.started", "scaling_group", group.id,
            tenant_id=group.tenant_id, project_id=group.project_id, vm_id=member.vm_id, hook=hook.name,
            transition=hook.transition, deadline=member.action_deadline.isoformat(),
        )  # fmt: skip


def _message(
    s: Session, group: ScalingGroup, member: ScalingGroupMember, hook: ScalingLifecycleHook
) -> bytes:
    vm = s.get(VM, member.vm_id)
    assert member.action_deadline is not None
    document = {
        "type": "scaling_group.lifecycle_action",
        "transition": hook.transition,
        "hook": hook.name,
        "group": {"id": group.id, "name": group.name, "project_id": group.project_id},
        "vm": {"id": member.vm_id, "name": vm.name if vm else None, "addresses": _addresses(s, member.vm_id)},
        "token": member.action_token,
        "deadline": member.action_deadline.isoformat(),
        "default_result": hook.default_result,
        "complete": {"method": "POST", "path": f"/v1/scaling-groups/{group.id}/lifecycle-actions"},
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def _update(ctx: Context, vm_id: str, **values: Any) -> None:
    """Merge ``values`` into the member's action record (nothing when the member is gone)."""
    with ctx.db.session() as s:
        member = s.get(ScalingGroupMember, vm_id)
        if member is not None:
            member.action = {**member.action, **values}


def _read(ctx: Context, vm_id: str) -> dict[str, Any] | None:
    """The member's action record (None: the member is gone), without taking the write lock."""
    with ctx.db.read_session() as s:
        member = s.get(ScalingGroupMember, vm_id)
        return None if member is None else dict(member.action)


async def _post(
    url: str, body: bytes, headers: dict[str, str], policy: netguard.EgressPolicy, timeout: float
) -> int:
    async with netguard.request("POST", url, policy, content=body, headers=headers, timeout=timeout) as r:
        return r.status_code


async def deliver(ctx: Context, vm_id: str, url: str, secret: str, body: bytes, deadline: float) -> None:
    """POST the signed event, retried with backoff on a refusal or a 5xx while ``deadline``
    (monotonic) allows; each attempt and the last failure are recorded on the member."""
    policy = netguard.EgressPolicy.from_settings(ctx.settings)
    delivery_id = "lca_" + hashlib.sha256(body).hexdigest()[:24]
    pause = BACKOFF_S
    for attempt in range(1, ATTEMPTS + 1):
        now = int(time.time())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(secret, now, body),
            "NovaCron-Event": "scaling_group.lifecycle_action",
            "webhook-id": delivery_id,
            "webhook-timestamp": str(now),
        }
        left = deadline - time.monotonic()
        try:
            status = await _post(url, body, headers, policy, max(min(ATTEMPT_TIMEOUT_S, left), 0.5))
            error = None if status < 500 else f"HTTP {status}"
        except (netguard.EgressDenied, netguard.FetchFailed) as exc:
            error = str(exc)
        if error is None:
            await asyncio.to_thread(
                _update, ctx, vm_id, delivered=True, attempts=attempt, delivery_error=None
            )
            return
        log.warning(
            "lifecycle hook %s for %s: attempt %d failed: %s", netguard.safe_url(url), vm_id, attempt, error
        )
        await asyncio.to_thread(_update, ctx, vm_id, attempts=attempt, delivery_error=error)
        if time.monotonic() + pause >= deadline:
            return
        await asyncio.sleep(pause)
        pause *= 2


def _prepare(ctx: Context, vm_id: str, hook_id: str) -> tuple[str, str, bytes, float, bool] | None:
    """Start (or resume) the action; (url, secret, body, seconds left, delivered) or None if gone."""
    with ctx.db.session() as s:
        member, hook = s.get(ScalingGroupMember, vm_id), s.get(ScalingLifecycleHook, hook_id)
        group = s.get(ScalingGroup, member.group_id) if member is not None else None
        if member is None or hook is None or group is None:
            return None
        _start(s, member, hook)
        s.flush()
        assert member.action_deadline is not None
        enc = encryption_for(ctx.settings)
        secret = enc.open_text(hook.signing_secret, signing_secret_aad(hook.id))
        left = (member.action_deadline - utcnow()).total_seconds()
        return (
            enc.open_text(hook.url, url_aad(hook.id)),
            secret,
            _message(s, group, member, hook),
            left,
            bool(member.action.get("delivered")),
        )


async def await_hook(ctx: Context, vm_id: str, hook_id: str, activity_id: str | None) -> str | None:
    """Call one hook for the member and wait for its answer or its deadline; the result (None when
    the member or the hook went meanwhile)."""
    prepared = await asyncio.to_thread(_prepare, ctx, vm_id, hook_id)
    if prepared is None:
        return None
    url, secret, body, left, delivered = prepared
    deadline = time.monotonic() + max(left, 0.0)
    sender = None if delivered else asyncio.create_task(deliver(ctx, vm_id, url, secret, body, deadline))
    try:
        while True:
            action = await asyncio.to_thread(_read, ctx, vm_id)
            if action is None:
                return None
            answer = action.get("answer")
            if answer or time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_S)
    finally:
        if sender is not None:
            sender.cancel()
    return await asyncio.to_thread(_finish, ctx, vm_id, hook_id, activity_id)


def _finish(ctx: Context, vm_id: str, hook_id: str, activity_id: str | None) -> str | None:
    """Decide the action (the answer, or the default at the deadline) and record it."""
    from datetime import datetime

    with ctx.db.session() as s:
        member, hook = s.get(ScalingGroupMember, vm_id), s.get(ScalingLifecycleHook, hook_id)
        if member is None:
            return None
        action = dict(member.action)
        answer = action.get("answer")
        default = hook.default_result if hook is not None else "continue"
        result, by = (answer["result"], "answer") if answer else (default, "timeout")
        started = datetime.fromisoformat(action["started_at"])
        waited = round((utcnow() - started).total_seconds(), 2)
        outcome = {"result": result, "by": by, "waited_s": waited}
        action["outcome"] = outcome
        action["done"] = {**(action.get("done") or {}), hook_id: result}
        member.action = action
        _record(s, member, action, activity_id)
        return str(result)


def _record(s: Session, member: ScalingGroupMember, action: dict[str, Any], activity_id: str | None) -> None:
    """The outcome as a ``lifecycle_hook`` activity of the group, and in the scale activity's numbers."""
    group = s.get(ScalingGroup, member.group_id)
    if group is None:
        return
    outcome = action["outcome"]
    numbers = {
        "vm_id": member.vm_id,
        "hook": action.get("hook"),
        "transition": action.get("transition"),
        **outcome,
        "delivered": bool(action.get("delivered")),
        "attempts": action.get("attempts", 0),
        "delivery_error": action.get("delivery_error"),
    }
    verb = "launch" if action.get("transition") == "launching" else "termination"
    by = "answered" if outcome["by"] == "answer" else "no answer, timed out"
    reason = (
        f"hook '{action.get('hook')}' on the {verb} of {member.vm_id}: {outcome['result']} "
        f"({by} after {outcome['waited_s']:.1f} s)"
    )
    now = utcnow()
    error = action.get("delivery_error")
    s.add(
        ScalingActivity(
            id=new_id("sact"), group_id=group.id, tenant_id=group.tenant_id, action="lifecycle_hook",
            reason=reason, numbers=numbers, task_id=group.task_id, started_at=now, finished_at=now,
            outcome="succeeded", detail=f"delivery: {error}" if error else None,
        )
    )  # fmt: skip
    scale = s.get(ScalingActivity, activity_id) if activity_id else None
    if scale is not None:
        scale.numbers = {**scale.numbers, "lifecycle": [*scale.numbers.get("lifecycle", []), numbers]}
    events.publish(
        s, "scaling_group.lifecycle_action.decided", "scaling_group", group.id,
        tenant_id=group.tenant_id, project_id=group.project_id, **numbers,
    )  # fmt: skip


async def run_hooks(ctx: Context, group_id: str, vm_id: str, transition: str, activity_id: str | None) -> str:
    """Every hook of ``transition`` for the member, in order, until one abandons; the result. The
    member goes back to its state before the wait (``launching`` / ``leaving``) whatever it is."""
    with ctx.db.read_session() as s:
        hook_ids = [h.id for h in hooks_of(s, group_id, transition)]
        member = s.get(ScalingGroupMember, vm_id)
        done = dict((member.action.get("done") or {}) if member is not None else {})
    result = "continue"
    for hook_id in hook_ids:
        decided = done.get(hook_id)
        if decided is None:
            decided = await await_hook(ctx, vm_id, hook_id, activity_id)
        if decided == "abandon":
            result = "abandon"
            break
    with ctx.db.session() as s:
        member = s.get(ScalingGroupMember, vm_id)
        if member is not None and member.state == PENDING[transition]:
            member.state = "launching" if transition == "launching" else "leaving"
    return result
