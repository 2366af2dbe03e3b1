"""Scaling groups: identical VMs made from one launch template, kept at a desired count.

A group owns an anti-affinity server group (its VMs spread across hosts) and its members; every
scaling action is a ``scalinggroup.scale`` task and a row of ``scaling_activities`` saying why
(who or which policy asked, with which numbers) and how it ended.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, UTCDateTime, Versioned, utcnow


class ScalingGroup(Timestamped, Versioned, Base):
    __tablename__ = "scaling_groups"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(48))
    #: the launch template: image and flavor ids, NICs ``[{network_id, security_groups}]``,
    #: user-data and labels (``autoscaling.groups.Template`` as a dict)
    template: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: raised by each change of the template; a member launched from an older one is refreshed
    template_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    min_size: Mapped[int] = mapped_column(Integer)
    max_size: Mapped[int] = mapped_column(Integer)
    desired: Mapped[int] = mapped_column(Integer)
    #: ``[{pool_id, loadbalancer_id, protocol_port}]``: pools every running member joins
    lb_pools: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    #: oldest, newest or spread (the host with the most members loses one first)
    termination_policy: Mapped[str] = mapped_column(String(16), default="oldest")
    cooldown_s: Mapped[int] = mapped_column(Integer, default=300)
    #: how long a new member's failing health checks are not held against it
    warmup_s: Mapped[int] = mapped_column(Integer, default=120)
    #: how long a leaving member's active sessions may take to end before it leaves its pools
    drain_timeout_s: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    #: the anti-affinity server group its members are created in
    server_group_id: Mapped[str | None] = mapped_column(
        ForeignKey("server_groups.id", ondelete="SET NULL"), nullable=True
    )
    #: active, deleting
    status: Mapped[str] = mapped_column(String(16), default="active")
    #: the scale or refresh task in flight, or the last one (one at a time per group)
    task_id: Mapped[str | None] = mapped_column(String(40), nullable=True)


class ScalingGroupMember(Timestamped, Base):
    """One VM of a group; the row goes when the VM is gone."""

    __tablename__ = "scaling_group_members"
    vm_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("scaling_groups.id", ondelete="CASCADE"), index=True)
    #: launching, pending_launch (a lifecycle hook's answer awaited before it joins), in_service,
    #: leaving (drained, being deleted), pending_terminate (drained; a hook's answer awaited)
    state: Mapped[str] = mapped_column(String(24), default="launching")
    protected_from_scale_in: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the group's template version its VM was launched from
    template_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    launched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: healthy, unhealthy (its VM in error or gone, or down in a pool past the grace period)
    health: Mapped[str] = mapped_column(String(16), default="healthy")
    #: why it is unhealthy
    health_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: when a pool first reported it down (None while up)
    down_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: the lifecycle action awaited now: its token (what the receiver answers with) and deadline,
    #: kept here so a restarted server resumes the wait
    action_token: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    action_deadline: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: the action's record: ``{hook_id, hook, transition, started_at, answer, attempts,
    #: delivery_error, done: {hook_id: result}}`` (``autoscaling/lifecycle.py``)
    action: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ScalingLifecycleHook(Timestamped, Versioned, Base):
    """A signed webhook called when a member launches or terminates; the group waits for its answer."""

    __tablename__ = "scaling_lifecycle_hooks"
    __table_args__ = (UniqueConstraint("group_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("scaling_groups.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(48))
    #: launching (after the VM runs, before it joins the pools), terminating (after the drain)
    transition: Mapped[str] = mapped_column(String(16))
    #: sealed: a webhook URL is a credential as often as not (a token in its path or query)
    url: Mapped[str] = mapped_column(Text)
    #: the URL as it may be shown: no user:password, no query (``netguard.safe_url``)
    safe_url: Mapped[str] = mapped_column(Text)
    #: the HMAC key of the ``NovaCron-Signature`` header, sealed (``identity/sealing.py``)
    signing_secret: Mapped[str] = mapped_column(Text)
    timeout_s: Mapped[int] = mapped_column(Integer)
    #: continue or abandon: what applies when no answer came by the deadline
    default_result: Mapped[str] = mapped_column(String(16))


class ScalingActivity(Base):
    """One scaling action of a group: what was asked and why, and how it ended."""

    __tablename__ = "scaling_activities"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("scaling_groups.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    #: scale_out, scale_in, replace, converge, create, delete, refresh
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    #: the policy that asked (None: a person through the API, or the health reconcile)
    policy: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: the numbers behind the decision and the result: desired before/after, launched, removed...
    numbers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    task_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: in_progress, succeeded, failed, cancelled (a refresh)
    outcome: Mapped[str] = mapped_column(String(16), default="in_progress")
    #: why it failed (a quota refusal's words), or what it did
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class ScalingPolicy(Timestamped, Versioned, Base):
    """A rule that sets its group's desired count from a metric, a forecast or the clock."""

    __tablename__ = "scaling_policies"
    __table_args__ = (UniqueConstraint("group_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    group_id: Mapped[str] = mapped_column(ForeignKey("scaling_groups.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(48))
    #: target_tracking, step, scheduled, predictive
    kind: Mapped[str] = mapped_column(String(16))
    #: the kind's parameters, as ``autoscaling.scaling_policies`` validated them
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    #: seconds after the group's last scaling action before this policy may scale in (None: the group's)
    cooldown_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: what the evaluation remembers between rounds (the scheduled action applied last)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
