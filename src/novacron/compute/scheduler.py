"""The scheduler's stable entry points; the implementation lives in ``compute.placement``.

``claim(session, vm, strategy)`` picks a host (filters: up, heartbeat, aggregate, labels, traits,
server group; weighs: spread or pack) and claims its vCPU/RAM with a conditional UPDATE;
``release(session, vm)`` gives the claim back (VM delete, failed create).
"""

from __future__ import annotations

from novacron.compute.placement import (
    HostUsage,
    NoValidHost,
    claim,
    host_usage,
    invalidate,
    reconcile_usage,
    release,
)

__all__ = [
    "HostUsage",
    "NoValidHost",
    "claim",
    "host_usage",
    "invalidate",
    "reconcile_usage",
    "release",
]
