"""Certificates ordered from an ACME directory, issued by a durable task and renewed on time.

A certificate request with ``acme: {names, loadbalancer_id, directory_url}`` stores the
certificate ``PENDING`` and queues :class:`IssueCertificate` (kind ``certificate.issue``). The
task takes the tenant's account on that directory (:class:`~novacron.db.models.AcmeAccount`, an EC
P-256 key made on first use and sealed like every secret), asks the process's
:class:`ChallengeResponders` for the responder of the named load balancer (it serves the HTTP-01
answers on the names' port 80; :class:`~novacron.lbaas.haproxy.HAProxyInstance` is one) and runs
:meth:`~novacron.lbaas.acme.AcmeClient.issue` in a worker thread. The issued chain and key are
stored as an upload would be (``certstore.install``), the certificate turns ``ACTIVE`` and
``certificate.issued`` is published; a first issuance that fails turns it ``ERROR`` with the
reason in ``last_error``.

The :class:`RenewalController` (leader only) queues the same task, marked as a renewal, for every
ACTIVE ACME certificate that expires within ``acme_renew_days``: ``certificate.renewed`` on
success (and the registered renewal listeners are told, so the load balancers serving it get the
new one), ``certificate.renewal_failed`` otherwise, when the old certificate keeps serving and the
next check tries again.

The directory URL is a tenant's input: it must be HTTPS and pass the egress guard
(``netguard.py``: public addresses, or the operator's ``NOVACRON_EGRESS_ALLOW``), when asked for
and again before each order. The ACME protocol library then makes its own connections to the
directory's endpoints; its TLS is verified against ``NOVACRON_ACME_CA_BUNDLE`` or the system's trust.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwk import JWKEC
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from novacron import events
from novacron.db.base import new_id, utcnow
from novacron.db.models import AcmeAccount, LbCertificate, Task
from novacron.errors import DomainError, InvalidInput
from novacron.identity.encryption import encryption_for
from novacron.lbaas.acme import AcmeClient, AcmeDirectory, ChallengeResponder
from novacron.lbaas.certificates import parse_bundle
from novacron.lbaas.certstore import ACTIVE, ERROR, install
from novacron.netguard import EgressDenied, EgressPolicy, check_url
from novacron.tasks.controller import ControllerLoop, Job
from novacron.tasks.runner import StepFailed, TaskHandler, create_task
from novacron.tasks.service import wake_on_commit

if TYPE_CHECKING:
    from novacron.config import Settings
    from novacron.context import Context

log = logging.getLogger(__name__)
RENEWAL_CONTROLLER = "novacron.certificates"
MAX_NAMES = 100
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"
)


@dataclass(frozen=True)
class AcmeOrder:
    """What to order: the DNS ``names``, the load balancer that answers their HTTP-01 challenges,
    and the directory (None: the operator's ``NOVACRON_ACME_DIRECTORY``)."""

    names: tuple[str, ...]
    loadbalancer_id: str
    directory_url: str | None = None


class ChallengeResponders(Protocol):
    """Finds where a load balancer serves HTTP-01 answers (the load balancer service provides it,
    through the load balancer's agent)."""

    def responder(self, session: Session, tenant_id: str, loadbalancer_id: str) -> ChallengeResponder:
        """The responder of the tenant's load balancer ``loadbalancer_id``; a DomainError (NotFound)
        when the tenant has no such load balancer: another tenant's is never used."""
        ...


#: told (in the renewal's transaction) that a certificate was renewed: the load balancer service
#: re-applies the load balancers serving it
RenewalListener = Callable[[Session, LbCertificate], None]
_renewal_listeners: list[RenewalListener] = []


def register_renewal_listener(listener: RenewalListener) -> None:
    """Have ``listener`` told of every renewed certificate."""
    if listener not in _renewal_listeners:
        _renewal_listeners.append(listener)


def account_key_aad(account_id: str) -> str:
    """What an ACME account's sealed key is bound to."""
    return f"acme_accounts.key_pem:{account_id}"


def checked_directory(url: str, settings: Settings) -> str:
    """``url`` when it is an HTTPS URL the egress guard lets the platform reach (422 otherwise)."""
    if not url.lower().startswith("https://"):
        raise InvalidInput("acme.directory_url", "an ACME directory is an https:// URL (RFC 8555)")
    try:
        check_url(url, EgressPolicy.from_settings(settings))
    except EgressDenied as exc:
        raise InvalidInput("acme.directory_url", str(exc)) from None
    return url


def checked_names(names: tuple[str, ...]) -> list[str]:
    """The order's names, lower-cased, each a DNS name HTTP-01 can prove (no wildcard)."""
    out = list(dict.fromkeys(n.strip().lower().rstrip(".") for n in names))
    if not out or len(out) > MAX_NAMES:
        raise InvalidInput("acme.names", f"give 1 to {MAX_NAMES} DNS names")
    for n, name in enumerate(out):
        if name.startswith("*."):
            raise InvalidInput(f"acme.names.{n}", "HTTP-01 cannot prove a wildcard name")
        if not _DNS_NAME.match(name):
            raise InvalidInput(f"acme.names.{n}", f"{name!r} is not a DNS name")
    return out


def order(session: Session, ctx: Context, row: LbCertificate, acme: AcmeOrder) -> str:
    """Store ``row`` as a PENDING ACME certificate and queue its issuance; the task's id."""
    names = checked_names(acme.names)
    row.acme_names = names
    row.names = names
    row.acme_directory_url = checked_directory(
        acme.directory_url or ctx.settings.acme_directory_url, ctx.settings
    )
    row.acme_loadbalancer_id = acme.loadbalancer_id
    session.add(row)
    session.flush()
    task = _queue(session, row, renewal=False)
    wake_on_commit(session, ctx)
    return task.id


def _queue(session: Session, row: LbCertificate, *, renewal: bool) -> Task:
    return create_task(
        session,
        IssueCertificate,
        "certificate",
        row.id,
        tenant_id=row.tenant_id,
        project_id=row.project_id,
        params={"renewal": renewal},
    )


def account_key(session: Session, settings: Settings, tenant_id: str, directory_url: str) -> JWKEC:
    """The tenant's account key on ``directory_url``, made (and sealed) the first time."""
    enc = encryption_for(settings)
    found = select(AcmeAccount).where(
        AcmeAccount.tenant_id == tenant_id, AcmeAccount.directory_url == directory_url
    )
    account = session.scalar(found)
    if account is None:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        account_id = new_id("acme")
        account = AcmeAccount(
            id=account_id,
            tenant_id=tenant_id,
            directory_url=directory_url,
            key_pem=enc.seal_text(pem, account_key_aad(account_id)),
        )
        try:
            with session.begin_nested():
                session.add(account)
        except IntegrityError:  # another task made it meanwhile: use that one
            account = session.scalars(found).one()
    clear = enc.open_text(account.key_pem, account_key_aad(account.id))
    opened = serialization.load_pem_private_key(clear.encode(), password=None)
    assert isinstance(opened, ec.EllipticCurvePrivateKey)
    return JWKEC(key=opened)


@dataclass(frozen=True)
class _Prepared:
    client: AcmeClient
    responder: ChallengeResponder
    names: list[str]


class IssueCertificate(TaskHandler):
    """Issue (or renew) an ACME certificate through HTTP-01 answered by its load balancer."""

    kind = "certificate.issue"
    steps = ["issue"]  # noqa: RUF012 - the TaskHandler API

    async def run_step(self, ctx: Context, task: Task, step: str) -> None:
        try:
            prepared = await asyncio.to_thread(self._prepare, ctx, task.resource_id)
            pem = await asyncio.to_thread(prepared.client.issue, prepared.names, prepared.responder)
            info = parse_bundle(pem)
        except DomainError as exc:
            raise StepFailed(str(exc)) from exc
        with ctx.db.session() as s:
            row = s.get(LbCertificate, task.resource_id)
            if row is None:
                raise StepFailed("the certificate was deleted while it was being issued")
            renewal = row.certificate_pem is not None
            install(row, info, ctx.settings)
            self._publish(s, "certificate.renewed" if renewal else "certificate.issued", row)
            if renewal:
                for listener in _renewal_listeners:
                    listener(s, row)

    @staticmethod
    def _prepare(ctx: Context, cert_id: str) -> _Prepared:
        settings = ctx.settings
        with ctx.db.session() as s:
            row = s.get(LbCertificate, cert_id)
            if row is None or row.acme_directory_url is None or row.acme_loadbalancer_id is None:
                raise StepFailed("the certificate was deleted, or it is not an ACME certificate")
            # checked again: what the name resolves to may have changed since the request
            url = checked_directory(row.acme_directory_url, settings)
            key = account_key(s, settings, row.tenant_id, url)
            responders = ctx.acme_responders
            if responders is None:
                raise StepFailed("no load balancer can answer ACME challenges in this deployment")
            responder = responders.responder(s, row.tenant_id, row.acme_loadbalancer_id)
            names = list(row.acme_names or row.names)
        ca_bundle = str(settings.acme_ca_bundle) if settings.acme_ca_bundle is not None else None
        return _Prepared(AcmeClient(AcmeDirectory(url, ca_bundle=ca_bundle), key), responder, names)

    async def rollback(self, ctx: Context, task: Task, error: str) -> None:
        with ctx.db.session() as s:
            row = s.get(LbCertificate, task.resource_id)
            if row is None:
                return
            row.last_error = error[:4000]
            renewal = row.certificate_pem is not None
            if not renewal:
                row.status = ERROR
            self._publish(
                s, "certificate.renewal_failed" if renewal else "certificate.issue_failed", row, error
            )

    @staticmethod
    def _publish(s: Session, type_: str, row: LbCertificate, error: str | None = None) -> None:
        extra = {"error": error} if error is not None else {}
        events.publish(
            s,
            type_,
            "certificate",
            row.id,
            tenant_id=row.tenant_id,
            project_id=row.project_id,
            name=row.name,
            names=list(row.names),
            not_after=row.not_after.isoformat() if row.not_after else None,
            **extra,
        )


def renew_due(session: Session, renew_days: int, now: datetime.datetime | None = None) -> list[str]:
    """Queue the renewal of every ACTIVE ACME certificate expiring within ``renew_days`` days that
    has no issuance under way; the ids of the certificates queued."""
    horizon = (now or utcnow()) + datetime.timedelta(days=renew_days)
    busy = select(Task.resource_id).where(
        Task.kind == IssueCertificate.kind, Task.state.in_(("pending", "running"))
    )
    due = select(LbCertificate).where(
        LbCertificate.source == "acme",
        LbCertificate.status == ACTIVE,
        LbCertificate.not_after <= horizon,
        LbCertificate.id.not_in(busy),
    )
    queued = []
    for row in session.scalars(due):
        _queue(session, row, renewal=True)
        queued.append(row.id)
    return queued


class RenewalController:
    """Every ``acme_check_interval_s``: queue the renewals due (leader only, ``workers.py``)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.loop = ControllerLoop(
            "certificate renewal",
            [Job("renewals", self.run_once)],
            tick_s=ctx.settings.acme_check_interval_s,
        )

    def run_once(self) -> list[str]:
        """Queue the renewals due now; their certificates' ids."""
        with self.ctx.db.session() as s:
            queued = renew_due(s, self.ctx.settings.acme_renew_days)
        if queued:
            log.info("certificate renewals queued: %s", queued)
            if self.ctx.tasks is not None:
                self.ctx.tasks.wake()
        return queued
