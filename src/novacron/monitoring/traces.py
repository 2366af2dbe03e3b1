"""Traces as callers see them: the recent traces of the local store, and one trace's spans.

Tenant-scoped: a tenant sees the traces its own API requests started, and of those only its own
request's span and the spans below it (the task, its steps, the agent's operations and their QMP
commands); a trace id another tenant's request continued (a client may send any ``traceparent``)
shows nothing of that other tenant. Platform administrators see every trace whole.

What a span may tell a tenant is cut down too: its name, timing, status and a few attributes that
describe the tenant's own request (method, route, status code, task kind and step, operation, QMP
command, the VM); not the hosts, the error text (it may name paths of the host), or anything else.
"""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import select

from novacron.db.listing import ListParams, paginate, where_equal
from novacron.db.models import TraceSpan
from novacron.errors import NotFound
from novacron.service import Service

#: the attributes a tenant sees on the spans of its own traces
TENANT_ATTRIBUTES = frozenset(
    {
        "http.request.method",
        "http.route",
        "http.response.status_code",
        "novacron.task.id",
        "novacron.task.kind",
        "novacron.task.step",
        "novacron.op",
        "novacron.vm_id",
        "qmp.command",
    }
)


class TraceService(Service):
    """The recent traces the caller may read (``trace:read``)."""

    def list(
        self, params: ListParams, *, status: str | None = None, name: str | None = None
    ) -> tuple[builtins.list[TraceSpan], str | None]:
        """One page of traces, newest first: each is the span where it entered the platform
        (``name``: only those of one route or task, e.g. ``POST /v1/vms``)."""
        stmt = select(TraceSpan).where(TraceSpan.entry.is_(True))
        if not self.principal.is_global:
            stmt = stmt.where(TraceSpan.tenant_id == self.principal.tenant_id)
        stmt = where_equal(stmt, (TraceSpan.status, status), (TraceSpan.name, name))
        rows, nxt = paginate(self.session, stmt, TraceSpan, params)
        return [self._shown(r) for r in rows], nxt

    def get(self, trace_id: str) -> builtins.list[TraceSpan]:
        """The spans of one trace the caller may see, in start order; 404 if it sees none."""
        spans = list(
            self.session.scalars(
                select(TraceSpan).where(TraceSpan.trace_id == trace_id.lower()).order_by(TraceSpan.started_at)
            )
        )
        if not self.principal.is_global:
            spans = [self._shown(s) for s in _descendants_of_tenant(spans, self.principal.tenant_id)]
        if not spans:
            raise NotFound("trace", trace_id)
        return spans

    def _shown(self, span: TraceSpan) -> TraceSpan:
        """``span`` as the caller may see it (detached from the session: nothing is written)."""
        if self.principal.is_global:
            return span
        self.session.expunge(span)
        span.host = ""
        span.status_message = None
        span.attributes = {k: v for k, v in span.attributes.items() if k in TENANT_ATTRIBUTES}
        return span


def _descendants_of_tenant(spans: list[TraceSpan], tenant_id: str | None) -> list[TraceSpan]:
    """The spans of ``tenant_id``'s own API requests and every span below them (no tag of their
    own: task, agent, QMP), following parent links; an orphan whose parent is gone is not shown."""
    children: dict[str | None, list[TraceSpan]] = {}
    for span in spans:
        children.setdefault(span.parent_id, []).append(span)
    shown: list[TraceSpan] = []
    todo = [s for s in spans if tenant_id is not None and s.tenant_id == tenant_id]
    seen = {s.span_id for s in todo}
    while todo:
        span = todo.pop()
        shown.append(span)
        for kid in children.get(span.span_id, []):
            # a span tagged with a tenant is an API request of its own: never reached through another
            if kid.span_id not in seen and kid.tenant_id is None:
                seen.add(kid.span_id)
                todo.append(kid)
    return sorted(shown, key=lambda s: (s.started_at, s.span_id))


def summary(spans: list[TraceSpan]) -> dict[str, Any]:
    """Where a trace began and how long it lasted, from its spans (in start order)."""
    start = spans[0].started_at
    end = max(s.started_at.timestamp() * 1e6 + s.duration_us for s in spans)
    return {"started_at": start, "duration_us": int(end - start.timestamp() * 1e6)}
