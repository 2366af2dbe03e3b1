"""Scaling groups: the service behind /v1/scaling-groups, and the one way to ask a group to scale.

A group is a launch template (image, flavor, NICs with security groups, user-data, labels) kept
at ``desired`` VMs between ``min_size`` and ``max_size``, spread by its own anti-affinity server
group (soft while there are fewer hosts than it may have VMs) and optionally behind load-balancer
pools. Everything the template names is resolved when the group is created, as the caller sees
it: a tenant names only its own (or public) images, its networks and its pools.

``request_scale`` is the one entry for a new desired count, whoever asks (a person through the
API, the health reconcile, a policy loop): it records a ``scaling_activities`` row with the reason
and the numbers, and starts the group's ``scalinggroup.scale`` task (``autoscaling/tasks.py``).
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from novacron import events
from novacron.compute.scope import resolve_project
from novacron.compute.vms import MAX_USER_DATA, root_disk_gb
from novacron.db.base import new_id, utcnow
from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import (
    Flavor,
    Host,
    Image,
    LbPool,
    Project,
    ScalingActivity,
    ScalingGroup,
    ScalingGroupMember,
    SecurityGroup,
    ServerGroup,
    Task,
)
from novacron.db.resolve import Named, resolve, scoped
from novacron.errors import Conflict, InvalidInput, NameTaken, NotFound
from novacron.network.service import find_network
from novacron.service import Service
from novacron.tasks.runner import TERMINAL, create_task
from novacron.tasks.service import wake_on_commit

#: the most VMs one group may have
MAX_GROUP_SIZE = 100
TERMINATION_POLICIES = ("oldest", "newest", "spread")


@dataclass(frozen=True)
class NicTemplate:
    """One NIC of every member: a network and its security groups (None: the default group)."""

    network: str
    security_groups: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PoolRef:
    """A load-balancer pool every running member joins, on ``protocol_port``."""

    pool_id: str
    protocol_port: int


@dataclass(frozen=True)
class GroupSpec:
    """A scaling group to create, as the caller asked for it (already checked for shape by the API)."""

    name: str
    image: str
    flavor: str
    min_size: int
    max_size: int
    desired: int
    networks: tuple[NicTemplate, ...] = ()
    user_data: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    lb_pools: tuple[PoolRef, ...] = ()
    termination_policy: str = "oldest"
    cooldown_s: int = 300
    warmup_s: int = 120
    drain_timeout_s: int = 30
    project_id: str | None = None


@dataclass(frozen=True)
class GroupChange:
    """An update: each field left None stays; a new ``desired`` is a scaling request with ``reason``."""

    min_size: int | None = None
    max_size: int | None = None
    desired: int | None = None
    termination_policy: str | None = None
    cooldown_s: int | None = None
    warmup_s: int | None = None
    drain_timeout_s: int | None = None
    reason: str | None = None
    #: refuse a new desired count during the cooldown after the last activity ended
    honor_cooldown: bool = False
    #: the launch template's fields, resolved as at create; a change raises ``template_version``
    #: (members keep their VMs until a refresh replaces them)
    image: str | None = None
    flavor: str | None = None
    networks: tuple[NicTemplate, ...] | None = None
    user_data: str | None = None
    labels: dict[str, str] | None = None

    def template_fields(self) -> dict[str, Any]:
        """The template fields this change sets."""
        names = ("image", "flavor", "networks", "user_data", "labels")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


@dataclass(frozen=True)
class GroupView:
    """A group with its member counts (in service, launching, leaving)."""

    group: ScalingGroup
    counts: dict[str, int]


def check_sizes(min_size: int, max_size: int, desired: int) -> None:
    """0 <= min <= desired <= max <= MAX_GROUP_SIZE, each refusal naming its field."""
    if not 0 <= min_size <= max_size:
        raise InvalidInput("min_size", f"must be between 0 and max_size ({max_size})")
    if max_size > MAX_GROUP_SIZE:
        raise InvalidInput("max_size", f"at most {MAX_GROUP_SIZE}")
    if not min_size <= desired <= max_size:
        raise InvalidInput("desired", f"must be between min_size ({min_size}) and max_size ({max_size})")


def scale_in_flight(session: Session, group: ScalingGroup) -> Task | None:
    """The group's scale (or refresh) task while it has not ended."""
    if group.task_id is None:
        return None
    task = session.get(Task, group.task_id)
    return task if task is not None and task.state not in TERMINAL else None


def request_scale(  # noqa: PLR0913  (what an activity records: who asked, why, with which numbers)
    session: Session,
    group: ScalingGroup,
    action: str,
    reason: str,
    policy: str | None = None,
    numbers: dict[str, Any] | None = None,
) -> ScalingActivity:
    """Record the activity and start the group's scale task (or leave it to the one in flight, which
    converges again at its end to whatever ``desired`` is then)."""
    from novacron.autoscaling.tasks import ScaleGroup  # the task module imports this one

    activity = ScalingActivity(
        id=new_id("sact"),
        group_id=group.id,
        tenant_id=group.tenant_id,
        action=action,
        reason=reason,
        policy=policy,
        numbers={"desired": group.desired, **(numbers or {})},
    )
    session.add(activity)
    running = scale_in_flight(session, group)
    if running is not None:
        activity.task_id = running.id
        activity.outcome = "succeeded"
        activity.finished_at = utcnow()
        activity.detail = f"handed to the {running.kind} task in flight ({running.id})"
    else:
        task = create_task(
            session,
            ScaleGroup,
            "scaling_group",
            group.id,
            tenant_id=group.tenant_id,
            project_id=group.project_id,
            params={"activity_id": activity.id},
        )
        activity.task_id = group.task_id = task.id
    session.flush()
    events.publish(
        session,
        "scaling_group.scaling",
        "scaling_group",
        group.id,
        tenant_id=group.tenant_id,
        project_id=group.project_id,
        action=action,
        reason=reason,
        desired=group.desired,
    )
    return activity


def scale_to(  # noqa: PLR0913  (a decision: the count, and who asked, why, with which numbers)
    session: Session,
    group: ScalingGroup,
    desired: int,
    reason: str,
    policy: str | None = None,
    numbers: dict[str, Any] | None = None,
) -> ScalingActivity | None:
    """Set the group's desired count, whoever decided it (the API, a policy's ``Decision``): held
    to ``[min_size, max_size]`` (the clamp recorded), a scale-out or scale-in activity with the
    reason when it changes; None when it is already there or the group is being deleted."""
    wanted = min(max(desired, group.min_size), group.max_size)
    if group.status != "active" or wanted == group.desired:
        return None
    before, group.desired = group.desired, wanted
    extra = {**(numbers or {}), "desired_before": before}
    if wanted != desired:
        extra["asked"] = desired
    action = "scale_out" if wanted > before else "scale_in"
    return request_scale(session, group, action, reason, policy, extra)


def spread_hard(session: Session, max_size: int) -> bool:
    """Anti-affinity is hard only while there are at least as many hosts up as the group may have VMs."""
    hosts = session.scalar(select(func.count()).select_from(Host).where(Host.state == "up")) or 0
    return hosts >= max_size


class ScalingGroupService(Service):
    """Create, read, change, scale and delete the caller's scaling groups."""

    def list(
        self, params: ListParams, *, name: str | None = None, project_id: str | None = None
    ) -> tuple[builtins.list[GroupView], str | None]:
        """One page of the groups the caller sees."""
        stmt = scoped(select(ScalingGroup), ScalingGroup, self.principal)
        stmt = where_equal(stmt, (ScalingGroup.name, name), (ScalingGroup.project_id, project_id))
        rows, nxt = paginate(self.session, stmt, ScalingGroup, params)
        return [self.view(g) for g in rows], nxt

    def get(self, ref: str) -> ScalingGroup:
        """The group of this id or name, as the caller sees it (another tenant's: 404)."""
        return resolve(self.session, self.principal, ScalingGroup, ref)

    def view(self, group: ScalingGroup) -> GroupView:
        """``group`` with how many members it has in each state."""
        rows = self.session.execute(
            select(ScalingGroupMember.state, func.count())
            .where(ScalingGroupMember.group_id == group.id)
            .group_by(ScalingGroupMember.state)
        )
        counts = {"launching": 0, "pending_launch": 0, "in_service": 0, "leaving": 0, "pending_terminate": 0}
        counts.update({state: int(n) for state, n in rows})
        return GroupView(group, counts)

    def create(self, spec: GroupSpec) -> ScalingGroup:
        """A new group with its anti-affinity server group; its first scale task launches ``desired``."""
        project = resolve_project(self.session, self.principal, spec.project_id)
        check_sizes(spec.min_size, spec.max_size, spec.desired)
        if self.session.scalar(
            select(ScalingGroup.id).where(
                ScalingGroup.project_id == project.id, ScalingGroup.name == spec.name
            )
        ):
            raise NameTaken("scaling group", spec.name, "name")
        group = ScalingGroup(
            id=new_id("asg"),
            project_id=project.id,
            tenant_id=project.tenant_id,
            name=spec.name,
            template=self._template(project, spec),
            min_size=spec.min_size,
            max_size=spec.max_size,
            desired=spec.desired,
            lb_pools=self._pools(project, spec),
            termination_policy=spec.termination_policy,
            cooldown_s=spec.cooldown_s,
            warmup_s=spec.warmup_s,
            drain_timeout_s=spec.drain_timeout_s,
            status="active",
        )
        spread = ServerGroup(
            id=new_id("sg"),
            project_id=project.id,
            tenant_id=project.tenant_id,
            name=f"scaling-{group.id}",
            policy="anti-affinity",
            hard=spread_hard(self.session, spec.max_size),
        )
        self.session.add(spread)
        self.session.flush()  # before the group that refers to it
        group.server_group_id = spread.id
        self.session.add(group)
        self.session.flush()
        self._publish("scaling_group.created", group)
        request_scale(self.session, group, "create", f"group created with desired {spec.desired}")
        wake_on_commit(self.session, self.ctx)
        return group

    def _template(self, project: Project, spec: GroupSpec) -> dict[str, Any]:
        """The launch template with every reference resolved to an id the project may use."""
        image = resolve(
            self.session, self.principal, Image, spec.image, project=project, named=Named("image")
        )
        if image.status != "active":
            raise InvalidInput("image", f"image '{image.name}' is {image.status}, not active")
        flavor = resolve(self.session, self.principal, Flavor, spec.flavor, named=Named("flavor"))
        root_disk_gb(self.principal, image, flavor)  # the image must fit the flavor's disk
        if len(spec.user_data.encode()) > MAX_USER_DATA:
            raise InvalidInput("user_data", f"larger than {MAX_USER_DATA} bytes")
        nics = []
        for i, nic in enumerate(spec.networks):
            network = find_network(
                self.session, self.principal, nic.network, f"networks.{i}.network", project
            )
            groups = None
            if nic.security_groups is not None:
                groups = [
                    resolve(
                        self.session,
                        self.principal,
                        SecurityGroup,
                        ref,
                        project=project,
                        named=Named(f"networks.{i}.security_groups.{j}"),
                    ).id
                    for j, ref in enumerate(nic.security_groups)
                ]
            nics.append({"network_id": network.id, "security_groups": groups})
        return {
            "image_id": image.id,
            "flavor_id": flavor.id,
            "networks": nics,
            "user_data": spec.user_data,
            "labels": dict(spec.labels),
        }

    def _pools(self, project: Project, spec: GroupSpec) -> builtins.list[dict[str, Any]]:
        """The pools named, each of a load balancer of the group's own tenant (others' are absent)."""
        if spec.lb_pools and not spec.networks:
            raise InvalidInput("lb_pools", "pool members need an address: give the template a network")
        out = []
        for i, ref in enumerate(spec.lb_pools):
            pool = self.session.scalar(
                select(LbPool).where(LbPool.id == ref.pool_id, LbPool.tenant_id == project.tenant_id)
            )
            if pool is None:
                raise InvalidInput(
                    f"lb_pools.{i}.pool_id",
                    f"no pool '{ref.pool_id}' of your load balancers; see GET /v1/loadbalancers/{{id}}/pools",
                )
            out.append(
                {
                    "pool_id": pool.id,
                    "loadbalancer_id": pool.loadbalancer_id,
                    "protocol_port": ref.protocol_port,
                }
            )
        return out

    def update(self, group: ScalingGroup, change: GroupChange) -> ScalingGroup:
        """Change sizes and settings; a new ``desired`` (or one pushed by new bounds) scales the group."""
        self._check_active(group)
        min_size = change.min_size if change.min_size is not None else group.min_size
        max_size = change.max_size if change.max_size is not None else group.max_size
        desired = (
            change.desired if change.desired is not None else min(max(group.desired, min_size), max_size)
        )
        check_sizes(min_size, max_size, desired)
        if change.template_fields():
            self._change_template(group, change)
        if change.termination_policy is not None:
            group.termination_policy = change.termination_policy
        if change.cooldown_s is not None:
            group.cooldown_s = change.cooldown_s
        if change.warmup_s is not None:
            group.warmup_s = change.warmup_s
        if change.drain_timeout_s is not None:
            group.drain_timeout_s = change.drain_timeout_s
        if max_size != group.max_size and group.server_group_id is not None:
            spread = self.session.get(ServerGroup, group.server_group_id)
            if spread is not None:
                spread.hard = spread_hard(self.session, max_size)
        group.min_size, group.max_size = min_size, max_size
        if desired != group.desired:
            if change.honor_cooldown:
                self._check_cooldown(group)
            reason = change.reason or f"desired set to {desired} by {self.principal.username}"
            scale_to(self.session, group, desired, reason)
            wake_on_commit(self.session, self.ctx)
        self.session.flush()
        return group

    def refresh(
        self, group: ScalingGroup, change: GroupChange, max_surge: int, max_unavailable: int
    ) -> ScalingActivity:
        """Change the template's fields given (if any), then start an instance refresh
        (``autoscaling/refresh.py``): every member of an older template version is replaced."""
        from novacron.autoscaling.refresh import start_refresh  # it imports this module

        self._check_active(group)
        if change.template_fields():
            self._change_template(group, change)
        who = self.principal.username
        return start_refresh(self.session, self.ctx, group, who, max_surge, max_unavailable)

    def _change_template(self, group: ScalingGroup, change: GroupChange) -> None:
        """A new template (every field resolved again, as at create) under the next version."""
        project = self.session.get(Project, group.project_id)
        assert project is not None
        old = group.template
        current = GroupSpec(
            name=group.name, image=old["image_id"], flavor=old["flavor_id"],
            min_size=group.min_size, max_size=group.max_size, desired=group.desired,
            networks=tuple(
                NicTemplate(n["network_id"], None if (sgs := n["security_groups"]) is None else tuple(sgs))
                for n in old.get("networks", [])
            ),
            user_data=old.get("user_data", ""), labels=dict(old.get("labels", {})),
        )  # fmt: skip
        template = self._template(project, replace(current, **change.template_fields()))
        if group.lb_pools and not template["networks"]:
            raise InvalidInput("networks", "the group's pool members need an address: keep a network")
        if template != old:
            group.template, group.template_version = template, group.template_version + 1
            self._publish("scaling_group.template_changed", group)

    def _check_cooldown(self, group: ScalingGroup) -> None:
        last = self.session.scalar(
            select(func.max(ScalingActivity.finished_at)).where(ScalingActivity.group_id == group.id)
        )
        if last is not None and utcnow() < last + timedelta(seconds=group.cooldown_s):
            raise Conflict(
                f"Scaling group '{group.name}' is cooling down until "
                f"{(last + timedelta(seconds=group.cooldown_s)).isoformat(timespec='seconds')}.",
            )

    def _check_active(self, group: ScalingGroup) -> None:
        if group.status != "active":
            raise Conflict(f"Scaling group '{group.name}' is {group.status}.")

    def delete(self, group: ScalingGroup) -> ScalingActivity:
        """Scale to zero (draining its pools), then the group and its server group go."""
        if group.status == "deleting":
            last = self.session.scalar(
                select(ScalingActivity)
                .where(ScalingActivity.group_id == group.id, ScalingActivity.action == "delete")
                .order_by(ScalingActivity.started_at.desc())
                .limit(1)
            )
            if last is not None:
                return last
        group.status = "deleting"
        before = group.desired
        group.min_size = group.desired = 0
        self._publish("scaling_group.deleting", group)
        activity = request_scale(
            self.session, group, "delete", f"group deleted by {self.principal.username}",
            numbers={"desired_before": before},
        )  # fmt: skip
        wake_on_commit(self.session, self.ctx)
        return activity

    def members(self, group: ScalingGroup) -> builtins.list[ScalingGroupMember]:
        """The group's members, oldest first."""
        stmt = select(ScalingGroupMember).where(ScalingGroupMember.group_id == group.id)
        return list(
            self.session.scalars(stmt.order_by(ScalingGroupMember.launched_at, ScalingGroupMember.vm_id))
        )

    def member(self, group: ScalingGroup, vm_id: str) -> ScalingGroupMember:
        """The member of ``group`` whose VM this is."""
        member = self.session.get(ScalingGroupMember, vm_id)
        if member is None or member.group_id != group.id:
            raise NotFound(
                "member", vm_id, detail=f"Scaling group '{group.name}' has no member VM '{vm_id}'."
            )
        return member

    def protect(self, group: ScalingGroup, vm_id: str, protected: bool) -> ScalingGroupMember:
        """Set or clear a member's protection from scale-in."""
        member = self.member(group, vm_id)
        member.protected_from_scale_in = protected
        self._publish(
            "scaling_group.member.protected" if protected else "scaling_group.member.unprotected", group
        )
        self.session.flush()
        return member

    def activities(
        self, group: ScalingGroup, params: ListParams
    ) -> tuple[builtins.list[ScalingActivity], str | None]:
        """One page of the group's activity history."""
        stmt = select(ScalingActivity).where(ScalingActivity.group_id == group.id)
        return paginate(self.session, stmt, ScalingActivity, params)

    def _publish(self, kind: str, group: ScalingGroup) -> None:
        events.publish(
            self.session,
            kind,
            "scaling_group",
            group.id,
            tenant_id=group.tenant_id,
            project_id=group.project_id,
            name=group.name,
        )
