"""Placement: filter and weigh hosts from an in-memory view, then claim atomically in the database.

- ``spec``: the request spec a VM carries (aggregate, labels, required/forbidden traits).
- ``view``: the per-process view of hosts and the filter-and-weigh decision (spread or pack).
- ``claims``: ``claim``/``release``/``reconcile_usage``, the conditional UPDATEs that decide.
"""

from novacron.compute.placement.claims import (
    STRATEGIES,
    HostUsage,
    NoValidHost,
    claim,
    claim_on,
    host_usage,
    reconcile_usage,
    release,
    reserve_elsewhere,
    resize_claim,
    try_claim,
    unreserve,
)
from novacron.compute.placement.spec import RequestSpec
from novacron.compute.placement.view import HEARTBEAT_GRACE_S, PlacementView, invalidate, view_for

__all__ = [
    "HEARTBEAT_GRACE_S",
    "STRATEGIES",
    "HostUsage",
    "NoValidHost",
    "PlacementView",
    "RequestSpec",
    "claim",
    "claim_on",
    "host_usage",
    "invalidate",
    "reconcile_usage",
    "release",
    "reserve_elsewhere",
    "resize_claim",
    "try_claim",
    "unreserve",
    "view_for",
]
