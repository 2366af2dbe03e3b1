"""The abuse guard's bans, from the agents' reports to the tenant's events.

Each agent runs every protected listener's guard once a second (``agent/lbaas.py``) and reports
the sources it banned since its last report (``lb_bans``: ``{lb id: [BanDecision as a dict]}``,
:class:`novacron.lbaas.guard.BanDecision`). Each becomes a ``loadbalancer.source.banned`` event
of the load balancer's tenant, with the decision explained: the rule, what was seen, the
threshold it reached and how long the ban lasts (HAProxy lifts it by itself). Only load balancers
with a leg on the reporting host count, and at most :data:`MAX_PER_REPORT` decisions of one load
balancer per report, so a flood of sources cannot turn into a flood of events.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from novacron.db.models import LoadBalancer
from novacron.lbaas import changes

MAX_PER_REPORT = 50


def _decision(raw: Any) -> dict[str, Any] | None:
    """The reported decision's fields, or None when it is not one."""
    if not isinstance(raw, Mapping):
        return None
    try:
        decision = {
            "listener_id": str(raw["listener_id"])[:64],
            "source": str(ipaddress.ip_address(str(raw["source"]))),
            "rule": str(raw["rule"])[:64],
            "seen": int(raw["seen"]),
            "threshold": float(raw["threshold"]),
            "ban_seconds": int(raw["ban_seconds"]),
        }
    except (KeyError, TypeError, ValueError):
        return None
    decision["reason"] = f"{decision['rule']}: {decision['seen']} reached {decision['threshold']:g}"
    return decision


def record_bans(
    session: Session, host_id: str, here: Collection[str], lb_bans: Mapping[str, Sequence[Any]]
) -> int:
    """Publish the bans ``host_id`` reported for the load balancers ``here`` (``owners_on`` it);
    how many were published."""
    published = 0
    for lb_id, decisions in lb_bans.items():
        lb = session.get(LoadBalancer, lb_id) if lb_id in here else None
        if lb is None:
            continue
        for raw in list(decisions)[:MAX_PER_REPORT]:
            decision = _decision(raw)
            if decision is not None:
                changes.publish(session, "source.banned", lb, host_id=host_id, **decision)
                published += 1
    return published
