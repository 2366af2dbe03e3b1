"""/v1/certificates (the load balancers' certificate store) through the in-process API.

A PEM bundle or a PKCS#12 file is checked (a key that is not the certificate's, an expired
certificate, a wrong PKCS#12 password are 422 naming the field and the reason), the key is never
answered and is sealed at rest (neither its column nor the database file holds its PEM), creates
are idempotent, a certificate is its tenant's alone (404 elsewhere, and
``certstore.certificates_for`` refuses another tenant's reference), a certificate in use cannot
be deleted, and an ACME order is queued as a task with its directory behind the egress guard.
"""

from __future__ import annotations

import base64
import datetime as dt
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from novacron.context import Context
from novacron.db.base import Database
from novacron.db.models import Event, LbCertificate, Task
from novacron.errors import NotFound
from novacron.lbaas import certstore
from tests.conftest import TENANT_PASSWORD, in_process_app
from tests.integration.metrics_engines import login
from tests.tlsca import TestCA, key_pem


@dataclass
class World:
    client: TestClient
    db: Database
    ctx: Context
    ca: TestCA
    admin: dict[str, str]
    alpha: dict[str, str]
    alpha_id: str
    beta: dict[str, str]
    beta_id: str


def _member(client: TestClient, admin: dict[str, str], tenant: str) -> tuple[str, dict[str, str]]:
    tenant_id = client.post("/v1/tenants", json={"name": tenant}, headers=admin).json()["id"]
    projects = client.get("/v1/projects", params={"tenant_id": tenant_id}, headers=admin).json()["items"]
    if not [p for p in projects if p["tenant_id"] == tenant_id]:
        r = client.post("/v1/projects", json={"name": "main", "tenant_id": tenant_id}, headers=admin)
        assert r.status_code == 201, r.text
    user = {"username": "web", "password": TENANT_PASSWORD, "role": "member", "tenant_id": tenant_id}
    assert client.post("/v1/users", json=user, headers=admin).status_code == 201
    return str(tenant_id), login(client, f"web@{tenant}", TENANT_PASSWORD)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    state = tmp_path_factory.mktemp("lbcerts") / "state"
    with in_process_app(state) as (client, password, db):
        admin = login(client, "admin", password)
        alpha_id, alpha = _member(client, admin, "alpha")
        beta_id, beta = _member(client, admin, "beta")
        ctx = cast(FastAPI, client.app).state.ctx
        yield World(client, db, ctx, TestCA.create(), admin, alpha, alpha_id, beta, beta_id)


def _key_body(pem: str) -> str:
    """The base64 body of a PEM key: what must never be stored or answered."""
    return "".join(line for line in pem.splitlines() if not line.startswith("-----"))


def _create(
    world: World, body: dict[str, Any], who: dict[str, str] | None = None, key: str | None = None
) -> Any:
    headers = {**(who or world.alpha), **({"Idempotency-Key": key} if key else {})}
    return world.client.post("/v1/certificates", json=body, headers=headers)


def _problem_field(r: Any) -> tuple[str, str]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    error = r.json()["errors"][0]
    return error["field"], error["reason"]


def test_a_pem_bundle_is_stored_its_key_never_answered_and_sealed_at_rest(world: World) -> None:
    certificate, key = world.ca.leaf(["shop.example.com", "www.shop.example.com"])
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    private = key_pem(key)
    bundle = private + cert_pem + world.ca.pem  # in any order, as people paste them

    r = _create(world, {"name": "shop", "certificate": bundle}, key="shop-1")
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["source"], made["status"]) == ("upload", "ACTIVE")
    assert made["names"] == ["shop.example.com", "www.shop.example.com"]
    assert "shop.example.com" in made["subject"] and "NovaCron test CA" in made["issuer"]
    assert made["not_after"] and made["fingerprint_sha256"] and made["task_id"] is None
    assert made["certificate"].startswith(cert_pem.strip())  # the leaf first, then the chain
    # a retry with the same key is the same certificate, not a second one
    again = _create(world, {"name": "shop", "certificate": bundle}, key="shop-1")
    assert (again.status_code, again.json()["id"], again.headers.get("Idempotent-Replayed")) == (
        201,
        made["id"],
        "true",
    )
    assert _create(world, {"name": "shop", "certificate": bundle}).status_code == 409

    secret = _key_body(private)
    answers = [
        r.text,
        world.client.get(f"/v1/certificates/{made['id']}", headers=world.alpha).text,
        world.client.get("/v1/certificates/shop", headers=world.alpha).text,
        world.client.get("/v1/certificates", headers=world.alpha).text,
    ]
    for text in answers:
        assert "PRIVATE KEY" not in text and secret[:40] not in text and "private_key" not in text

    with world.db.session() as s:
        row = s.get(LbCertificate, made["id"])
        assert row is not None and row.private_key is not None
        assert row.private_key.startswith("nce1:") and "PRIVATE KEY" not in row.private_key
        # the load balancer's apply task gets the whole bundle, key opened
        served = certstore.certificates_for(s, world.alpha_id, [made["id"], "shop"], world.ctx.settings)
    reloaded = serialization.load_pem_private_key(
        served[made["id"]].split("-----END CERTIFICATE-----\n")[-1].encode(), None
    )
    assert reloaded.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    assert served["shop"] == served[made["id"]]
    # nowhere in the database file (nor its write-ahead log) is the key in clear
    database = Path(world.db.url.removeprefix("sqlite:///"))
    with sqlite3.connect(database) as raw:
        raw.execute("PRAGMA wal_checkpoint(FULL)")
    for file in (database, database.with_name(database.name + "-wal")):
        if file.exists():
            assert secret[:40].encode() not in file.read_bytes()


def test_the_key_can_come_apart_and_pkcs12_with_or_without_a_password(world: World) -> None:
    certificate, key = world.ca.leaf(["api.example.com"])
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    r = _create(world, {"name": "api", "certificate": cert_pem + world.ca.pem, "private_key": key_pem(key)})
    assert r.status_code == 201 and r.json()["names"] == ["api.example.com"], r.text

    for name, password in (("p12-locked", b"s3cret pass"), ("p12-open", None)):
        encryption = (
            serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        )
        blob = pkcs12.serialize_key_and_certificates(
            b"api", key, certificate, [world.ca.certificate], encryption
        )
        body: dict[str, Any] = {"name": name, "pkcs12": base64.b64encode(blob).decode()}
        if password:
            wrong = _create(world, {**body, "pkcs12_password": "not it"})
            field, reason = _problem_field(wrong)
            assert field == "body.pkcs12" and "password" in reason
            body["pkcs12_password"] = password.decode()
        r = _create(world, body)
        assert r.status_code == 201, r.text
        assert r.json()["names"] == ["api.example.com"] and "PRIVATE KEY" not in r.text
    field, reason = _problem_field(_create(world, {"name": "junk", "pkcs12": "not base64!"}))
    assert (field, reason) == ("body.pkcs12", "is not base64")


def test_a_key_that_is_not_the_certificates_or_an_expired_certificate_is_refused(world: World) -> None:
    certificate, _ = world.ca.leaf(["mail.example.com"])
    _, other = world.ca.leaf(["mail.example.com"])
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    field, reason = _problem_field(
        _create(world, {"name": "mail", "certificate": cert_pem, "private_key": key_pem(other)})
    )
    assert field == "body.private_key" and "does not match the certificate" in reason

    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    expired = world.ca.bundle(["old.example.com"], not_before=past - dt.timedelta(days=30), not_after=past)
    field, reason = _problem_field(_create(world, {"name": "old", "certificate": expired}))
    assert field == "body.certificate" and reason.startswith("expired on")

    field, _ = _problem_field(_create(world, {"name": "nokey", "certificate": cert_pem}))
    assert field == "body.private_key"
    field, _ = _problem_field(_create(world, {"name": "nothing"}))
    assert field == "body.certificate"
    with world.db.session() as s:
        names = set(s.scalars(select(LbCertificate.name)))
    assert not names & {"mail", "old", "nokey", "nothing"}


def test_a_certificate_is_its_tenants_alone(world: World) -> None:
    r = _create(world, {"name": "private", "certificate": world.ca.bundle(["a.example.com"])})
    assert r.status_code == 201, r.text
    cert_id = r.json()["id"]
    c = world.client
    for ref in (cert_id, "private"):
        assert c.get(f"/v1/certificates/{ref}", headers=world.beta).status_code == 404
        assert c.delete(f"/v1/certificates/{ref}", headers=world.beta).status_code == 404
    assert cert_id not in [i["id"] for i in c.get("/v1/certificates", headers=world.beta).json()["items"]]
    assert cert_id in [i["id"] for i in c.get("/v1/certificates", headers=world.admin).json()["items"]]
    # nor can another tenant's load balancer reference it, by id or by name
    with world.db.session() as s:
        for ref in (cert_id, "private"):
            with pytest.raises(NotFound):
                certstore.certificates_for(s, world.beta_id, [ref], world.ctx.settings)
    # the same name is another tenant's own business
    assert (
        _create(
            world, {"name": "private", "certificate": world.ca.bundle(["b.example.com"])}, world.beta
        ).status_code
        == 201
    )


def test_a_certificate_in_use_is_not_deleted(world: World) -> None:
    cert_id = _create(world, {"name": "used", "certificate": world.ca.bundle(["u.example.com"])}).json()["id"]
    users = {cert_id: ["listener https of load balancer web"]}
    certstore.register_in_use_check(lambda _session, row: users.get(row.id, []))
    r = world.client.delete(f"/v1/certificates/{cert_id}", headers=world.alpha)
    assert r.status_code == 409 and "listener https of load balancer web" in r.json()["detail"], r.text
    users.clear()
    assert world.client.delete(f"/v1/certificates/{cert_id}", headers=world.alpha).status_code == 204
    assert world.client.get(f"/v1/certificates/{cert_id}", headers=world.alpha).status_code == 404
    with world.db.session() as s:
        kinds = list(s.scalars(select(Event.type).where(Event.resource_id == cert_id).order_by(Event.seq)))
    assert kinds == ["certificate.created", "certificate.deleted"]


def test_an_acme_order_is_a_task_and_its_directory_passes_the_egress_guard(world: World) -> None:
    order = {"names": ["Shop.Example.com"], "loadbalancer_id": "lb-1", "directory_url": "https://8.8.8.8/dir"}
    r = _create(world, {"name": "acme-shop", "acme": order})
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["source"], made["status"], made["names"]) == ("acme", "PENDING", ["shop.example.com"])
    assert made["acme"] == {
        "names": ["shop.example.com"],
        "directory_url": "https://8.8.8.8/dir",
        "loadbalancer_id": "lb-1",
    }
    with world.db.session() as s:
        task = s.get(Task, made["task_id"])
        assert task is not None and (task.kind, task.resource_id) == ("certificate.issue", made["id"])
        # a certificate not issued yet cannot be served
        with pytest.raises(Exception, match="PENDING"):
            certstore.certificates_for(s, world.alpha_id, [made["id"]], world.ctx.settings)

    refused = {
        "http://8.8.8.8/dir": "https://",
        "https://127.0.0.1:14000/dir": "address",
        "https://10.1.2.3/dir": "address",
        "https://[::1]/dir": "address",
    }
    for url, why in refused.items():
        field, reason = _problem_field(_create(world, {"name": "x", "acme": {**order, "directory_url": url}}))
        assert field == "body.acme.directory_url" and why in reason, (url, reason)
    field, reason = _problem_field(
        _create(world, {"name": "x", "acme": {**order, "names": ["*.example.com"]}})
    )
    assert (field, reason) == ("body.acme.names.0", "HTTP-01 cannot prove a wildcard name")
    both = {"name": "x", "acme": order, "certificate": world.ca.bundle(["x.example.com"])}
    assert _problem_field(_create(world, both))[0] == "body.certificate"


def test_kek_rotation_rewraps_the_keys_and_they_still_open(world: World) -> None:
    from novacron.identity.encryption import EncryptionService
    from novacron.identity.sealing import rotate

    cert_id = _create(world, {"name": "rotated", "certificate": world.ca.bundle(["r.example.com"])}).json()[
        "id"
    ]
    with world.db.session() as s:
        before = certstore.certificates_for(s, world.alpha_id, [cert_id], world.ctx.settings)
        row = s.get(LbCertificate, cert_id)
        assert row is not None and row.private_key is not None
        old_kek = EncryptionService.kek_of(row.private_key)
    report = rotate(world.ctx.settings, world.db)
    assert old_kek in report.retired and not report.errors, report
    with world.db.session() as s:
        row = s.get(LbCertificate, cert_id)
        assert row is not None and row.private_key is not None
        assert EncryptionService.kek_of(row.private_key) == report.new_kek
        assert certstore.certificates_for(s, world.alpha_id, [cert_id], world.ctx.settings) == before
