"""ACME answers served by a tenant's load balancer, and renewed certificates put where they serve.

:class:`AgentResponders` is the platform's ``ChallengeResponders`` (``lbaas/acme_service.py``):
an ACME order names one of the tenant's load balancers, and each HTTP-01 answer is put on every
host of that load balancer (both amphorae of an ACTIVE_STANDBY pair, so whichever holds the VIP
answers) with the agent's ``lb_challenge`` operation, at run time, without a reload. The issuing
task calls the responder from a worker thread, so the operations are one-off blocking calls.

:func:`reapply_serving` is told of every renewed certificate (in the renewal's transaction) and
queues a re-application of each load balancer serving it: the apply step hands the agent the new
bundle and HAProxy replaces it in place (``HAProxyInstance.put_certificate``), so no client sees
a failed handshake.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from novacron.agent.protocol import LbChallenge
from novacron.compute import hostops
from novacron.db.models import LbCertificate, LoadBalancer
from novacron.errors import Conflict, NotFound
from novacron.lbaas import changes
from novacron.lbaas.acme import ChallengeResponder
from novacron.lbaas.acme_service import register_renewal_listener
from novacron.lbaas.listeners import listeners_serving
from novacron.lbaas.resolve import amphorae_of

if TYPE_CHECKING:
    from novacron.context import Context

log = logging.getLogger(__name__)
#: how long one host may take to put an answer in place
CHALLENGE_TIMEOUT_S = 30.0


class AgentResponders:
    """Answers ACME challenges on the hosts of a tenant's load balancer."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def responder(self, session: Session, tenant_id: str, loadbalancer_id: str) -> ChallengeResponder:
        """The responder of the tenant's load balancer (NotFound for another tenant's, Conflict
        while it is on no host)."""
        lb = session.get(LoadBalancer, loadbalancer_id)
        if lb is None or lb.tenant_id != tenant_id:
            raise NotFound("loadbalancer", loadbalancer_id)
        hosts = sorted({a.host_id for a in amphorae_of(session, lb.id) if a.host_id})
        if not hosts:
            raise Conflict(f"Load balancer '{lb.name}' is on no host yet: wait until it is ACTIVE.")
        return _AgentResponder(self.ctx, lb.id, hosts)


class _AgentResponder:
    def __init__(self, ctx: Context, loadbalancer_id: str, hosts: list[str]) -> None:
        self.ctx = ctx
        self.loadbalancer_id = loadbalancer_id
        self.hosts = hosts

    def put_challenge(self, token: str, key_authorization: str) -> None:
        for host_id in self.hosts:
            request = LbChallenge(self.loadbalancer_id, token, key_authorization)
            hostops.call_blocking(self.ctx, host_id, request, self.loadbalancer_id, CHALLENGE_TIMEOUT_S)

    def remove_challenge(self, token: str) -> None:
        for host_id in self.hosts:
            try:
                request = LbChallenge(self.loadbalancer_id, token)
                hostops.call_blocking(self.ctx, host_id, request, self.loadbalancer_id, CHALLENGE_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - a stale answer is harmless; the order's outcome stands
                log.warning("could not remove ACME answer %s from host %s: %s", token, host_id, exc)


def reapply_serving(session: Session, certificate: LbCertificate) -> None:
    """Queue a re-application of every load balancer serving ``certificate``. One with a change
    in flight is left to it: its apply step reads the certificates when it runs."""
    serving = {listener.loadbalancer_id for listener, _ in listeners_serving(session, certificate)}
    for lb_id in sorted(serving):
        lb = session.get(LoadBalancer, lb_id)
        if lb is not None and lb.provisioning_status not in changes.PENDING:
            changes.submit(session, None, lb, "certificate_renewed", certificate_id=certificate.id)


register_renewal_listener(reapply_serving)
