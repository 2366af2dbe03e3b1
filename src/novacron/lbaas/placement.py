"""Where a load balancer's legs run: up, unfenced hosts, the ones carrying the fewest legs first.

SINGLE takes one host; ACTIVE_STANDBY two distinct ones (fewer than two up is a refusal that says
so). A leg already placed on a host that is still usable stays where it is.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from novacron.db.models import Host, LbAmphora, Port
from novacron.errors import Conflict


class NoHosts(Conflict):
    """Too few hosts are up to run the load balancer's legs."""


def usable_hosts(session: Session) -> list[str]:
    stmt = select(Host.id).where(Host.state == "up", Host.fenced_at.is_(None)).order_by(Host.name)
    return list(session.scalars(stmt))


def leg_counts(session: Session) -> Counter[str]:
    rows = session.execute(
        select(LbAmphora.host_id, func.count())
        .where(LbAmphora.host_id.is_not(None))
        .group_by(LbAmphora.host_id)
    )
    return Counter({host: n for host, n in rows if host is not None})


def too_few(legs: int, usable: int) -> NoHosts:
    return NoHosts(
        f"A load balancer of {legs} {'amphora' if legs == 1 else 'amphorae'} needs {legs} distinct "
        f"hosts up (not fenced); {usable} {'is' if usable == 1 else 'are'}."
    )


def require_hosts(session: Session, legs: int) -> None:
    """Refuse a load balancer of ``legs`` amphorae when fewer distinct hosts are up."""
    usable = len(usable_hosts(session))
    if usable < legs:
        raise too_few(legs, usable)


def place(session: Session, legs: list[LbAmphora]) -> list[str]:
    """Put every leg without a usable host on one, each on a different host; the hosts changed."""
    usable = usable_hosts(session)
    kept = {a.host_id for a in legs if a.host_id in usable}
    unplaced = [a for a in legs if a.host_id not in usable]
    counts = leg_counts(session)
    free = sorted((h for h in usable if h not in kept), key=lambda h: (counts[h], usable.index(h)))
    if len(free) < len(unplaced):
        raise too_few(len(legs), len(usable))
    for leg, host in zip(unplaced, free, strict=False):
        leg.host_id = host
        if leg.port_id is not None and (port := session.get(Port, leg.port_id)) is not None:
            port.host_id = host
    session.flush()
    return [a.host_id for a in unplaced if a.host_id]
