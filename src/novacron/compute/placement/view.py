"""An in-memory view of the hosts, so that a placement decision costs microseconds, not a table scan.

The database stays the source of truth: a decision made here is only a proposal, and the
conditional UPDATE of ``claims.try_claim`` decides. The view is per process and per engine; it
reloads every ``ttl_s`` seconds, when this process changes a host's configuration
(``invalidate``), and reloads one host's counters after a lost claim. A stale view can only
propose a host that then refuses (the claim moves on to the next one) or overlook room freed
by another process for at most ``ttl_s``.

Per distinct request spec (aggregate, labels, traits) the view keeps the hosts that pass the
static filters in a list sorted by free RAM, so spread takes the largest that fits from the end
and pack the smallest that fits from a bisection: O(log n) plus the hosts skipped, instead of
O(hosts) per decision.
"""

from __future__ import annotations

import threading
import time
import weakref
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from novacron.compute.placement.spec import RequestSpec
from novacron.db.models import Aggregate, AggregateHost, Host

#: a host whose agent has not reported for this long gets no new VMs
HEARTBEAT_GRACE_S = 30.0
#: how old the view may get before a decision reloads it
VIEW_TTL_S = 2.0
#: candidate lists kept per view (one per distinct request spec)
MAX_SPECS = 256
#: what a placement decision ends in: a host claimed, a project's reservation used, or no host fits
DECISION_OUTCOMES = ("placed", "reservation", "no_valid_host")
#: tallied beside the decisions: a claim that lost the race for a host's room
CLAIM_CONFLICT = "claim_conflict"


@dataclass(slots=True)
class HostEntry:
    idx: int
    id: str
    name: str
    state: str
    #: unix time of the last heartbeat, 0 when never
    heartbeat: float
    cpus: int
    ram_mb: int
    cpu_ratio: float
    ram_ratio: float
    vcpus_used: int
    ram_mb_used: int
    labels: dict[str, str]
    traits: frozenset[str]
    aggregates: frozenset[str]
    #: tenants this host is reserved for (aggregate metadata ``tenants``), None when open to all
    tenants: frozenset[str] | None = None
    #: held by active capacity reservations (their own projects claim through them instead)
    vcpus_reserved: int = 0
    ram_mb_reserved: int = 0

    @property
    def free_vcpus(self) -> float:
        return self.cpus * self.cpu_ratio - self.vcpus_used - self.vcpus_reserved

    @property
    def free_ram_mb(self) -> float:
        return self.ram_mb * self.ram_ratio - self.ram_mb_used - self.ram_mb_reserved


def static_refusal(e: HostEntry, spec: RequestSpec) -> str | None:
    """Why ``e`` can never take a VM of ``spec`` (until its configuration changes), or None."""
    if e.state != "up":
        return f"in {e.state}"
    if e.tenants is not None and spec.tenant not in e.tenants:
        return "reserved for other tenants (aggregate metadata 'tenants')"
    if spec.aggregate is not None and spec.aggregate not in e.aggregates:
        return "not in the requested aggregate"
    for k, v in spec.labels:
        if e.labels.get(k) != v:
            return f"label {k}={e.labels.get(k, '(unset)')}, {k}={v} requested"
    missing = spec.required_traits - e.traits
    if missing:
        return "lacks trait " + ",".join(sorted(missing))
    present = spec.forbidden_traits & e.traits
    if present:
        return "has forbidden trait " + ",".join(sorted(present))
    return None


class PlacementView:
    def __init__(self, ttl_s: float = VIEW_TTL_S) -> None:
        self.ttl_s = ttl_s
        self.lock = threading.RLock()
        self.hosts: list[HostEntry] = []
        self.by_id: dict[str, int] = {}
        self.loaded_at = float("-inf")
        #: some aggregate reserves its hosts for tenants: requests then carry their tenant
        self.isolating = False
        self._lists: dict[RequestSpec, list[tuple[float, int]]] = {}
        self._host_specs: list[list[RequestSpec]] = []
        #: decisions made through this view, by outcome (read by the platform's metrics)
        self.tally: Counter[str] = Counter()

    def count(self, outcome: str) -> None:
        """Tally one decision's outcome (``DECISION_OUTCOMES``) or a ``CLAIM_CONFLICT``."""
        with self.lock:
            self.tally[outcome] += 1

    # -- loading -------------------------------------------------------------------------------

    def stale(self) -> bool:
        return time.monotonic() - self.loaded_at > self.ttl_s

    def invalidate(self) -> None:
        with self.lock:
            self.loaded_at = float("-inf")

    def refresh(self, session: Session) -> None:
        rows = session.execute(
            select(
                Host.id,
                Host.name,
                Host.state,
                Host.last_heartbeat,
                Host.cpus,
                Host.ram_mb,
                Host.cpu_allocation_ratio,
                Host.ram_allocation_ratio,
                Host.vcpus_used,
                Host.ram_mb_used,
                Host.vcpus_reserved,
                Host.ram_mb_reserved,
                Host.labels,
                Host.traits,
            ).order_by(Host.name)
        ).all()
        aggregates: dict[str, set[str]] = {}
        for agg_id, host_id in session.execute(select(AggregateHost.aggregate_id, AggregateHost.host_id)):
            aggregates.setdefault(host_id, set()).add(agg_id)
        reserved: dict[str, frozenset[str]] = {}
        for agg_id, meta in session.execute(select(Aggregate.id, Aggregate.meta)):
            if isinstance(meta, dict) and meta.get("tenants"):
                reserved[agg_id] = frozenset(t.strip() for t in str(meta["tenants"]).split(",") if t.strip())

        def tenants_of(host_id: str) -> frozenset[str] | None:
            sets = [reserved[a] for a in aggregates.get(host_id, ()) if a in reserved]
            return frozenset().union(*sets) if sets else None

        hosts = [
            HostEntry(
                idx=i,
                id=r.id,
                name=r.name,
                state=r.state,
                heartbeat=r.last_heartbeat.timestamp() if r.last_heartbeat is not None else 0.0,
                cpus=r.cpus,
                ram_mb=r.ram_mb,
                cpu_ratio=r.cpu_allocation_ratio,
                ram_ratio=r.ram_allocation_ratio,
                vcpus_used=r.vcpus_used,
                ram_mb_used=r.ram_mb_used,
                labels=dict(r.labels or {}),
                traits=frozenset(r.traits or ()),
                aggregates=frozenset(aggregates.get(r.id, ())),
                tenants=tenants_of(r.id),
                vcpus_reserved=r.vcpus_reserved,
                ram_mb_reserved=r.ram_mb_reserved,
            )
            for i, r in enumerate(rows)
        ]
        with self.lock:
            self.isolating = bool(reserved)
            self.hosts = hosts
            self.by_id = {h.id: h.idx for h in hosts}
            self._lists = {}
            self._host_specs = [[] for _ in hosts]
            self.loaded_at = time.monotonic()

    def ensure_fresh(self, session: Session) -> None:
        if self.stale():
            self.refresh(session)

    def reload_host(self, session: Session, host_id: str) -> None:
        """Re-read one host's counters and state after a claim on it lost."""
        row = session.execute(
            select(
                Host.state,
                Host.last_heartbeat,
                Host.vcpus_used,
                Host.ram_mb_used,
                Host.vcpus_reserved,
                Host.ram_mb_reserved,
            ).where(Host.id == host_id)
        ).one_or_none()
        with self.lock:
            idx = self.by_id.get(host_id)
            if idx is None:
                return
            e = self.hosts[idx]
            if row is None or row.state != e.state:
                self.loaded_at = float("-inf")  # configuration changed: rebuild on the next decision
                return
            e.heartbeat = row.last_heartbeat.timestamp() if row.last_heartbeat is not None else 0.0
            if (e.vcpus_reserved, e.ram_mb_reserved) != (row.vcpus_reserved, row.ram_mb_reserved):
                self.loaded_at = float("-inf")  # a reservation opened or closed: rebuild the lists
                return
            self._set_used(idx, row.vcpus_used, row.ram_mb_used)

    # -- counters ------------------------------------------------------------------------------

    def adjust(self, host_id: str, vcpus: int, ram_mb: int) -> None:
        """Apply this process's own claim (+) or release (-) without waiting for a reload."""
        with self.lock:
            idx = self.by_id.get(host_id)
            if idx is not None:
                e = self.hosts[idx]
                self._set_used(idx, e.vcpus_used + vcpus, e.ram_mb_used + ram_mb)

    def _set_used(self, idx: int, vcpus_used: int, ram_mb_used: int) -> None:
        e = self.hosts[idx]
        old = (e.free_ram_mb, idx)
        e.vcpus_used, e.ram_mb_used = vcpus_used, ram_mb_used
        new = (e.free_ram_mb, idx)
        if old == new:
            return
        for spec in self._host_specs[idx]:
            lst = self._lists.get(spec)
            if lst is None:
                continue
            pos = bisect_left(lst, old)
            if pos < len(lst) and lst[pos] == old:
                del lst[pos]
            insort(lst, new)

    # -- decisions -----------------------------------------------------------------------------

    def _candidates(self, spec: RequestSpec) -> list[tuple[float, int]]:
        lst = self._lists.get(spec)
        if lst is not None:
            return lst
        if len(self._lists) >= MAX_SPECS:
            self._lists.clear()
            self._host_specs = [[] for _ in self.hosts]
        cutoff = time.time() - HEARTBEAT_GRACE_S
        lst = []
        for e in self.hosts:
            if e.heartbeat >= cutoff and static_refusal(e, spec) is None:
                lst.append((e.free_ram_mb, e.idx))
                self._host_specs[e.idx].append(spec)
        lst.sort()
        self._lists[spec] = lst
        return lst

    def select(
        self,
        spec: RequestSpec,
        vcpus: int,
        ram_mb: int,
        strategy: str,
        exclude: set[int] | frozenset[int] = frozenset(),
        only: Iterable[int] | None = None,
    ) -> int | None:
        """The best host for the request, by strategy, or None. ``only`` restricts to those hosts."""
        cutoff = time.time() - HEARTBEAT_GRACE_S
        with self.lock:
            hosts = self.hosts
            if only is not None:
                pool = [
                    i
                    for i in only
                    if i not in exclude
                    and hosts[i].heartbeat >= cutoff
                    and hosts[i].free_ram_mb >= ram_mb
                    and hosts[i].free_vcpus >= vcpus
                    and static_refusal(hosts[i], spec) is None
                ]
                if not pool:
                    return None
                if strategy == "pack":
                    return min(pool, key=lambda i: (hosts[i].free_ram_mb, i))
                return max(pool, key=lambda i: (hosts[i].free_ram_mb, i))
            lst = self._candidates(spec)
            if strategy == "pack":
                for pos in range(bisect_left(lst, (float(ram_mb), -1)), len(lst)):
                    idx = lst[pos][1]
                    e = hosts[idx]
                    if idx not in exclude and e.heartbeat >= cutoff and e.free_vcpus >= vcpus:
                        return idx
                return None
            for pos in range(len(lst) - 1, -1, -1):
                free_ram, idx = lst[pos]
                if free_ram < ram_mb:
                    return None
                e = hosts[idx]
                if idx not in exclude and e.heartbeat >= cutoff and e.free_vcpus >= vcpus:
                    return idx
            return None

    def explain(self, spec: RequestSpec, vcpus: int, ram_mb: int) -> list[tuple[str, str]]:
        """(host name, reason it cannot take the request) for every host."""
        cutoff = time.time() - HEARTBEAT_GRACE_S
        out = []
        with self.lock:
            for e in self.hosts:
                reason = static_refusal(e, spec)
                if reason is None and e.heartbeat < cutoff:
                    reason = "no heartbeat"
                # no free amounts: the reason reaches tenants, and a host's exact free room would
                # show other tenants' VMs on it
                if reason is None and e.free_vcpus < vcpus:
                    reason = f"too little free vCPU ({vcpus} needed)"
                if reason is None and e.free_ram_mb < ram_mb:
                    reason = f"too little free RAM ({ram_mb} MiB needed)"
                out.append((e.name, reason or "fits"))
        return out


_views: weakref.WeakKeyDictionary[Engine, PlacementView] = weakref.WeakKeyDictionary()
_views_lock = threading.Lock()


def view_for(session: Session) -> PlacementView:
    engine = session.get_bind()
    if not isinstance(engine, Engine):
        engine = engine.engine
    with _views_lock:
        view = _views.get(engine)
        if view is None:
            view = _views[engine] = PlacementView()
        return view


def decisions(engine: Engine) -> dict[str, int]:
    """The outcomes tallied by this process's view of ``engine`` (empty before its first decision)."""
    with _views_lock:
        view = _views.get(engine)
    if view is None:
        return {}
    with view.lock:
        return dict(view.tally)


def invalidate(session: Session) -> None:
    """Call after changing a host's state, labels, traits, ratios or aggregates.

    The view reloads on its next decision and again after this transaction commits, so a reload
    that raced the commit cannot keep the old configuration for a whole TTL.
    """
    view = view_for(session)
    view.invalidate()
    event.listen(session, "after_commit", lambda _s: view.invalidate(), once=True)
