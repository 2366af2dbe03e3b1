"""An ACME certificate ordered through /v1/certificates, issued and renewed by the platform's task.

pebble (Let's Encrypt's test ACME server, tests/integration/pebblelab.py) validates HTTP-01 by
fetching the token from a real HAProxy load balancer (tests/integration/lblab.py), which the
process's challenge-responder seam hands the task. The directory passes the egress guard because
the test opens its loopback address with NOVACRON_EGRESS_ALLOW (``egress_allow``). The issued
certificate, handed out by ``certstore.certificates_for`` as the load balancer's apply would, is
served and verified against pebble's root; the renewal controller renews it when it is due (with
the clock moved forward), and a renewal whose challenge is not answered leaves the old
certificate serving with the reason recorded. Another tenant cannot have its certificate proved
by this tenant's load balancer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.context import Context
from novacron.db.base import Database
from novacron.db.models import Event, LbCertificate
from novacron.errors import NotFound
from novacron.lbaas import acme_service, certstore
from novacron.lbaas.acme import ChallengeResponder
from novacron.lbaas.acme_service import IssueCertificate, RenewalController
from novacron.lbaas.haproxy import HAProxyInstance
from novacron.tasks.runner import TaskRunner
from tests.conftest import require, short_tmpdir
from tests.integration.lblab import LbLab, haproxy_lab
from tests.integration.metrics_engines import login
from tests.integration.pebblelab import Pebble, have_pebble
from tests.integration.test_lb_certificates_api import _member
from tests.integration.test_lb_tls import TlsClient, http_only, tls_spec
from tests.integration.test_lb_tls import Unanswered as UnansweredResponder

#: the directory's address: loopback, but not this host's own 127.0.0.1 (which the guard never opens)
DIRECTORY_ADDRESS = "127.0.0.2"


@dataclass
class Responders:
    """The seam the load balancer service fills: each tenant's load balancers by id."""

    load_balancers: dict[tuple[str, str], ChallengeResponder] = field(default_factory=dict)

    def responder(self, session: Session, tenant_id: str, loadbalancer_id: str) -> ChallengeResponder:
        found = self.load_balancers.get((tenant_id, loadbalancer_id))
        if found is None:
            raise NotFound("load balancer", loadbalancer_id)
        return found


@dataclass
class Lab:
    net: LbLab
    instance: HAProxyInstance
    pebble: Pebble
    client: Any
    db: Database
    ctx: Context
    alpha: dict[str, str]
    alpha_id: str
    beta: dict[str, str]
    responders: Responders


@pytest.fixture
def lab() -> Iterator[Lab]:
    require(have_pebble(), "needs pebble and pebble-challtestsrv (scripts/setup.sh installs pebble)")
    from tests.conftest import in_process_app

    state = short_tmpdir("ncacme")
    with haproxy_lab("ncacm", members=2) as (net, instance):
        pebble = Pebble(net, address=DIRECTORY_ADDRESS)
        try:
            pebble.start()
            instance.apply(http_only(net))
            allow = (ipaddress.ip_network(f"{DIRECTORY_ADDRESS}/32"),)
            with in_process_app(state, egress_allow=allow, acme_ca_bundle=pebble.tls_ca) as (
                client,
                password,
                db,
            ):
                admin = login(client, "admin", password)
                alpha_id, alpha = _member(client, admin, "alpha")
                _, beta = _member(client, admin, "beta")
                ctx = cast(FastAPI, client.app).state.ctx
                responders = Responders({(alpha_id, "lb-shop"): instance})
                ctx.acme_responders = responders
                yield Lab(net, instance, pebble, client, db, ctx, alpha, alpha_id, beta, responders)
        finally:
            pebble.stop()


def run_tasks(ctx: Context) -> None:
    """Run the queued certificate tasks to their end, as the server's task runner does."""

    async def run() -> None:
        runner = TaskRunner(ctx, [IssueCertificate()])
        runner.bind_loop(asyncio.get_running_loop())
        loop = asyncio.create_task(runner.run_forever(poll_s=0.1))
        try:
            await runner.drain(timeout_s=180)
        finally:
            await runner.stop()
            loop.cancel()

    asyncio.run(run())


def events_of(db: Database, cert_id: str) -> list[str]:
    with db.session() as s:
        stmt = select(Event.type).where(Event.resource_id == cert_id, Event.type.like("certificate.%"))
        return list(s.scalars(stmt.order_by(Event.seq)))


def served(lab: Lab, cert_id: str) -> str:
    """Put the certificate on the load balancer as its apply would (the bundle from the store)."""
    with lab.db.session() as s:
        bundle = certstore.certificates_for(s, lab.alpha_id, [cert_id], lab.ctx.settings)[cert_id]
    return lab.instance.put_certificate(cert_id, bundle).fingerprint_sha256


def test_an_acme_certificate_is_issued_by_the_task_served_and_renewed_when_due(lab: Lab) -> None:
    name = "shop.example.com"
    order = {"names": [name], "loadbalancer_id": "lb-shop", "directory_url": lab.pebble.directory_url}
    r = lab.client.post("/v1/certificates", json={"name": "shop", "acme": order}, headers=lab.alpha)
    assert r.status_code == 201, r.text
    cert_id, task_id = r.json()["id"], r.json()["task_id"]
    assert r.json()["status"] == "PENDING"

    run_tasks(lab.ctx)
    task = lab.client.get(f"/v1/tasks/{task_id}", headers=lab.alpha).json()
    assert task["state"] == "succeeded", task
    issued = lab.client.get(f"/v1/certificates/{cert_id}", headers=lab.alpha).json()
    assert (issued["status"], issued["names"], issued["last_error"]) == ("ACTIVE", [name], None)
    assert "Pebble" in issued["issuer"] and issued["renew_after"] is not None
    assert lab.instance.acme_map.read_text() == ""  # the challenge was withdrawn
    assert events_of(lab.db, cert_id) == ["certificate.created", "certificate.issued"]

    # served by the load balancer and verified against pebble's root
    fingerprint = served(lab, cert_id)
    assert fingerprint == issued["fingerprint_sha256"]
    lab.instance.apply(tls_spec(lab.net, cert_id))
    root = lab.net.workdir / "pebble-root.pem"
    root.write_text(lab.pebble.issuing_root())
    client = TlsClient(lab.net, root)
    assert client.fingerprints(name) == [fingerprint]

    # not due yet: nothing queued
    controller = RenewalController(lab.ctx)
    assert controller.run_once() == []
    renewed_seen: list[str] = []
    acme_service.register_renewal_listener(lambda _s, row: renewed_seen.append(row.id))
    # a month before it expires (the clock moved forward): renewed
    later = dt.datetime.fromisoformat(issued["not_after"]) - dt.timedelta(days=29)
    with lab.db.session() as s:
        assert acme_service.renew_due(s, lab.ctx.settings.acme_renew_days, now=later) == [cert_id]
        # one renewal at a time: a second look queues nothing more
        assert acme_service.renew_due(s, lab.ctx.settings.acme_renew_days, now=later) == []
    run_tasks(lab.ctx)
    renewed = lab.client.get(f"/v1/certificates/{cert_id}", headers=lab.alpha).json()
    assert renewed["status"] == "ACTIVE" and renewed["serial"] != issued["serial"]
    assert renewed_seen == [cert_id]
    assert served(lab, cert_id) == renewed["fingerprint_sha256"]
    assert client.fingerprints(name) == [renewed["fingerprint_sha256"]]
    # both orders were validated by pebble fetching the token from the load balancer
    assert lab.pebble.log().count("set VALID by completed challenge") == 2

    # a renewal nobody answers fails; the certificate keeps serving, the reason is kept
    lab.responders.load_balancers[(lab.alpha_id, "lb-shop")] = UnansweredResponder()
    with lab.db.session() as s:
        assert acme_service.renew_due(s, lab.ctx.settings.acme_renew_days, now=later) == [cert_id]
    run_tasks(lab.ctx)
    failed = lab.client.get(f"/v1/certificates/{cert_id}", headers=lab.alpha).json()
    assert failed["status"] == "ACTIVE" and failed["serial"] == renewed["serial"]
    assert "ACME validation of shop.example.com failed" in failed["last_error"]
    assert events_of(lab.db, cert_id)[-2:] == ["certificate.renewed", "certificate.renewal_failed"]
    assert client.fingerprints(name) == [renewed["fingerprint_sha256"]]


def test_another_tenants_load_balancer_never_answers_for_a_certificate(lab: Lab) -> None:
    order = {
        "names": ["beta.example.com"],
        "loadbalancer_id": "lb-shop",
        "directory_url": lab.pebble.directory_url,
    }
    r = lab.client.post("/v1/certificates", json={"name": "steal", "acme": order}, headers=lab.beta)
    assert r.status_code == 201, r.text
    cert_id = r.json()["id"]
    run_tasks(lab.ctx)
    failed = lab.client.get(f"/v1/certificates/{cert_id}", headers=lab.beta).json()
    assert failed["status"] == "ERROR" and "lb-shop" in failed["last_error"], failed
    assert events_of(lab.db, cert_id) == ["certificate.created", "certificate.issue_failed"]
    assert "set VALID" not in lab.pebble.log()
    with lab.db.session() as s:
        row = s.get(LbCertificate, cert_id)
        assert row is not None and row.private_key is None and row.certificate_pem is None
    assert Path(lab.instance.acme_map).read_text() == ""
