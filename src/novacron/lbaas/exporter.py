"""A load balancer's statistics, read from HAProxy's built-in Prometheus exporter.

The statistics frontend of every load balancer also listens on a unix socket in its state
directory (``stats.sock``, mode 600), so the agent reads ``/metrics`` from the host's namespace
without entering the load balancer's. :func:`scrape` keeps the families a tenant needs (requests,
responses by class, errors, denials, sessions, bytes per listener; response and total time, queue
and active members per pool; status, sessions, responses, errors and failed checks per member) and
names them by the platform's ids instead of HAProxy's proxy and server names: a sample is
``(series name, labels, value)`` with ``loadbalancer_id`` and ``listener_id``, ``pool_id`` or
``pool_id`` + ``member_id``. Who owns the load balancer is not the agent's to say: the control
plane adds the tenancy labels (``monitoring/series.py``).
"""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from novacron.errors import Unavailable
from novacron.lbaas.haproxy_config import STATS_SOCKET, name
from novacron.lbaas.model import LoadBalancerSpec

#: (series name, labels, value), JSON-friendly for the agent's report
LbSample = tuple[str, dict[str, str], float]

#: exporter family -> the platform's series, per scope (frontend = listener, backend = pool,
#: server = member)
LISTENER_SERIES = {
    "haproxy_frontend_http_requests_total": "novacron_lb_listener_requests_total",
    "haproxy_frontend_http_responses_total": "novacron_lb_listener_responses_total",
    "haproxy_frontend_connections_total": "novacron_lb_listener_connections_total",
    "haproxy_frontend_current_sessions": "novacron_lb_listener_current_sessions",
    "haproxy_frontend_request_errors_total": "novacron_lb_listener_request_errors_total",
    "haproxy_frontend_requests_denied_total": "novacron_lb_listener_requests_denied_total",
    "haproxy_frontend_denied_connections_total": "novacron_lb_listener_connections_denied_total",
    "haproxy_frontend_bytes_in_total": "novacron_lb_listener_received_bytes_total",
    "haproxy_frontend_bytes_out_total": "novacron_lb_listener_sent_bytes_total",
}
POOL_SERIES = {
    "haproxy_backend_response_time_average_seconds": "novacron_lb_pool_response_time_average_seconds",
    "haproxy_backend_total_time_average_seconds": "novacron_lb_pool_total_time_average_seconds",
    "haproxy_backend_current_queue": "novacron_lb_pool_current_queue",
    "haproxy_backend_active_servers": "novacron_lb_pool_active_members",
    "haproxy_backend_connection_errors_total": "novacron_lb_pool_connection_errors_total",
}
MEMBER_SERIES = {
    "haproxy_server_status": "novacron_lb_member_up",
    "haproxy_server_current_sessions": "novacron_lb_member_current_sessions",
    "haproxy_server_sessions_total": "novacron_lb_member_sessions_total",
    "haproxy_server_http_responses_total": "novacron_lb_member_responses_total",
    "haproxy_server_response_time_average_seconds": "novacron_lb_member_response_time_average_seconds",
    "haproxy_server_connection_errors_total": "novacron_lb_member_connection_errors_total",
    "haproxy_server_check_failures_total": "novacron_lb_member_check_failures_total",
}
_KEPT = {**LISTENER_SERIES, **POOL_SERIES, **MEMBER_SERIES}
#: the exporter's scopes we read (process and stick-table families are not a tenant's)
_QUERY = "/metrics?scope=frontend&scope=backend&scope=server"


def fetch(state_dir: Path, timeout: float = 2.0) -> str:
    """The exporter's text from the load balancer's statistics socket."""
    transport = httpx.HTTPTransport(uds=str(state_dir / STATS_SOCKET))
    try:
        with httpx.Client(transport=transport, timeout=timeout) as client:
            answer = client.get("http://haproxy" + _QUERY)
            answer.raise_for_status()
    except httpx.HTTPError as exc:
        raise Unavailable(f"the load balancer's statistics socket did not answer: {exc}") from None
    return answer.text


class _Names:
    """HAProxy's proxy and server names back to the spec's ids."""

    def __init__(self, spec: LoadBalancerSpec) -> None:
        self.listeners = {name(li.id): li.id for li in spec.listeners}
        self.pools = {name(p.id): p.id for p in spec.pools}
        self.members = {(name(p.id), name(m.id)): (p.id, m.id) for p in spec.pools for m in p.members}

    def labels(self, family: str, raw: dict[str, str]) -> dict[str, str] | None:
        proxy = raw.get("proxy", "")
        if family in LISTENER_SERIES:
            listener = self.listeners.get(proxy)
            return None if listener is None else {"listener_id": listener}
        if family in POOL_SERIES:
            pool = self.pools.get(proxy)
            return None if pool is None else {"pool_id": pool}
        ids = self.members.get((proxy, raw.get("server", "")))
        return None if ids is None else {"pool_id": ids[0], "member_id": ids[1]}


def parse(text: str, spec: LoadBalancerSpec) -> list[LbSample]:
    """The kept samples of an exporter page, labelled by the spec's ids. ``haproxy_server_status``
    (one sample per state) becomes ``novacron_lb_member_up``: 1 while the member is UP."""
    names = _Names(spec)
    out: list[LbSample] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            kept = _KEPT.get(sample.name)
            if kept is None:
                continue
            labels = names.labels(sample.name, dict(sample.labels))
            if labels is None:
                continue
            labels["loadbalancer_id"] = spec.id
            if sample.name == "haproxy_server_status":
                if sample.labels.get("state") != "UP":
                    continue
            elif "code" in sample.labels:
                labels["code"] = sample.labels["code"]
            out.append((kept, labels, float(sample.value)))
    return out


def scrape(state_dir: Path, spec: LoadBalancerSpec, timeout: float = 2.0) -> list[LbSample]:
    """The load balancer's statistics now (:func:`fetch` then :func:`parse`)."""
    return parse(fetch(state_dir, timeout), spec)
