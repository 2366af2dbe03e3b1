"""Lifecycle hooks of scaling groups: the service behind ``/v1/scaling-groups/{id}/lifecycle-hooks``
and ``/lifecycle-actions``.

A hook is a webhook the group calls when a member launches (its VM runs, before it joins the
pools) or terminates (drained, before its VM is deleted), and whose answer it waits for, up to
``timeout_s``: the receiver answers ``continue`` or ``abandon`` by POSTing the action's token to
``/lifecycle-actions`` as the tenant; with no answer by the deadline the hook's ``default_result``
applies. The wait itself is the scale task's (``autoscaling/lifecycle_wait.py``).

The URL passes the egress guard when the hook is written (a refused address is a 422 on ``url``)
and again at each delivery; the URL (shown without credentials or query) and the signing secret
are sealed at rest, the secret never read back.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from novacron import events, netguard
from novacron.db.base import new_id, utcnow
from novacron.db.models import ScalingGroup, ScalingGroupMember, ScalingLifecycleHook
from novacron.db.resolve import resolve
from novacron.errors import Conflict, InvalidInput, NameTaken, NotFound
from novacron.identity.encryption import encryption_for
from novacron.service import Service

TRANSITIONS = ("launching", "terminating")
RESULTS = ("continue", "abandon")
#: the member's state while a hook of each transition is awaited
PENDING = {"launching": "pending_launch", "terminating": "pending_terminate"}
MAX_HOOKS = 10


def signing_secret_aad(hook_id: str) -> str:
    """What a hook's sealed signing secret is bound to."""
    return f"scaling_lifecycle_hooks.signing_secret:{hook_id}"


def url_aad(hook_id: str) -> str:
    """What a hook's sealed URL is bound to."""
    return f"scaling_lifecycle_hooks.url:{hook_id}"


@dataclass(frozen=True)
class HookSpec:
    """A hook to add, as the caller asked for it (already checked for shape by the API)."""

    name: str
    transition: str
    url: str
    secret: str
    timeout_s: int = 300
    default_result: str = "continue"


@dataclass(frozen=True)
class ActionView:
    """A lifecycle action as its answer sees it."""

    vm_id: str
    hook: str
    transition: str
    result: str
    state: str


def hooks_of(session: Any, group_id: str, transition: str | None = None) -> list[ScalingLifecycleHook]:
    """The group's hooks (of one transition), by name: the order they are called in."""
    stmt = select(ScalingLifecycleHook).where(ScalingLifecycleHook.group_id == group_id)
    if transition is not None:
        stmt = stmt.where(ScalingLifecycleHook.transition == transition)
    return list(session.scalars(stmt.order_by(ScalingLifecycleHook.name)))


class LifecycleHookService(Service):
    """Add, list and remove a group's hooks; answer its members' lifecycle actions."""

    def group(self, ref: str) -> ScalingGroup:
        """The caller's group of this id or name (another tenant's: 404)."""
        return resolve(self.session, self.principal, ScalingGroup, ref)

    def list(self, group_ref: str) -> builtins.list[ScalingLifecycleHook]:
        return hooks_of(self.session, self.group(group_ref).id)

    def create(self, group_ref: str, spec: HookSpec) -> ScalingLifecycleHook:
        """A new hook; the URL must pass the egress guard (a 422 on ``url`` saying why not)."""
        group = self.group(group_ref)
        if group.status != "active":
            raise Conflict(f"Scaling group '{group.name}' is {group.status}.")
        existing = hooks_of(self.session, group.id)
        if any(h.name == spec.name for h in existing):
            raise NameTaken("lifecycle hook", spec.name, "name")
        if len(existing) >= MAX_HOOKS:
            raise InvalidInput("name", f"a group has at most {MAX_HOOKS} lifecycle hooks")
        try:
            netguard.check_url(spec.url, netguard.EgressPolicy.from_settings(self.ctx.settings))
        except netguard.EgressDenied as exc:
            raise InvalidInput("url", str(exc)) from exc
        hook_id = new_id("lch")
        enc = encryption_for(self.ctx.settings)
        hook = ScalingLifecycleHook(
            id=hook_id,
            group_id=group.id,
            tenant_id=group.tenant_id,
            name=spec.name,
            transition=spec.transition,
            url=enc.seal_text(spec.url, url_aad(hook_id)),
            safe_url=netguard.safe_url(spec.url),
            signing_secret=enc.seal_text(spec.secret, signing_secret_aad(hook_id)),
            timeout_s=spec.timeout_s,
            default_result=spec.default_result,
        )
        self.session.add(hook)
        self.session.flush()
        self._publish("scaling_group.lifecycle_hook.created", group, hook=hook.name)
        return hook

    def delete(self, group_ref: str, hook_ref: str) -> None:
        """Remove the hook (an action awaiting it ends at its deadline with its default result)."""
        group = self.group(group_ref)
        hook = next((h for h in hooks_of(self.session, group.id) if hook_ref in (h.id, h.name)), None)
        if hook is None:
            raise NotFound(
                "lifecycle hook", hook_ref, detail=f"Scaling group '{group.name}' has no hook '{hook_ref}'."
            )
        self.session.delete(hook)
        self._publish("scaling_group.lifecycle_hook.deleted", group, hook=hook.name)

    def complete(self, group_ref: str, token: str, result: str) -> ActionView:
        """Answer the action of this token: the same answer again is the same success (a retry);
        another answer to an action already decided, or one past its deadline, is a conflict."""
        group = self.group(group_ref)
        member = self.session.scalar(
            select(ScalingGroupMember).where(
                ScalingGroupMember.group_id == group.id, ScalingGroupMember.action_token == token
            )
        )
        if member is None:
            raise NotFound(
                "lifecycle action",
                "token",
                detail=f"Scaling group '{group.name}' awaits no action of this token.",
            )
        action = dict(member.action)
        decided = (action.get("answer") or {}).get("result") or (action.get("outcome") or {}).get("result")
        if decided is not None:
            if decided != result:
                raise Conflict(f"This lifecycle action was already decided: {decided}.")
        elif member.action_deadline is not None and utcnow() > member.action_deadline:
            raise Conflict("This lifecycle action timed out; its default result applies.")
        else:
            action["answer"] = {"result": result, "at": utcnow().isoformat(), "by": self.principal.username}
            member.action = action
            self._publish(
                "scaling_group.lifecycle_action.completed", group,
                vm_id=member.vm_id, hook=action.get("hook"), result=result,
            )  # fmt: skip
        self.session.flush()
        return ActionView(
            member.vm_id, str(action.get("hook")), str(action.get("transition")), result, member.state
        )

    def _publish(self, kind: str, group: ScalingGroup, **data: Any) -> None:
        events.publish(
            self.session, kind, "scaling_group", group.id,
            tenant_id=group.tenant_id, project_id=group.project_id, name=group.name, **data,
        )  # fmt: skip
