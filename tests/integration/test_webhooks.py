"""Webhooks end to end: a real server delivers its events to a receiver in a network namespace of
its own (``egresslab``: the "outside", opened by NOVACRON_EGRESS_ALLOW), signed as Standard Webhooks
specifies and verified here by the reference library; failures are retried, then pause the
subscription; what queued meanwhile survives a kill -9 and is sent on resume. The dispatcher's
fallback tick is 30 s: deliveries are prompt because the event bus wakes it."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.conftest import Server, destroy_server, make_server, require, short_tmpdir, tenant_user
from tests.integration import egresslab

Env = tuple[Server, egresslab.Origin, Path]


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    require(
        os.geteuid() == 0 and shutil.which("nsenter") is not None, "root and nsenter (network namespaces)"
    )
    served = short_tmpdir("nchook")
    with egresslab.origin(served) as origin:
        srv = make_server(
            NOVACRON_EGRESS_ALLOW=origin.network,
            NOVACRON_NETWORK_BACKEND="none",
            # the fallback round: every delivery here is prompt because the event bus wakes the
            # dispatcher, or because a retry fell due, never because of this tick
            NOVACRON_WEBHOOK_TICK_S="30",
            NOVACRON_WEBHOOK_RETRY_BASE_S="0.4",
            NOVACRON_WEBHOOK_MAX_ATTEMPTS="2",
            NOVACRON_WEBHOOK_PAUSE_AFTER="3",
        )
        srv.start()
        try:
            yield srv, origin, served
        finally:
            destroy_server(srv)
            shutil.rmtree(served, ignore_errors=True)


def posts(served: Path, path: str) -> list[dict[str, Any]]:
    """What the receiver recorded on ``path``, oldest first."""
    found = sorted((served / "posts").glob("*.json")) if (served / "posts").exists() else []
    return [r for r in (json.loads(p.read_text()) for p in found) if r["path"] == path]


def wait_for(what: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := what():
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s} s: {what}")


def verify(secret: str, post: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = Webhook(secret).verify(post["body"], post["headers"])
    return body


def subscribe(client: httpx.Client, name: str, url: str, **extra: Any) -> dict[str, Any]:
    r = client.post("/v1/webhooks", json={"name": name, "url": url, "event_types": ["volume.*"], **extra})
    assert r.status_code == 201, r.text
    return dict(r.json())


def volume(client: httpx.Client, project: str, name: str) -> None:
    r = client.post("/v1/volumes", json={"name": name, "size_gb": 1, "project_id": project})
    assert r.status_code in (201, 202), r.text


def test_events_arrive_signed_only_to_their_tenant_and_internal_urls_are_refused(env: Env) -> None:
    srv, origin, served = env
    with srv.client() as admin:
        alpha, alpha_project = tenant_user(admin, srv, "hooka", role="tenant-admin")
        beta, beta_project = tenant_user(admin, srv, "hookb", role="tenant-admin")
        # the platform itself and internal addresses: refused, naming the field and why
        for url in ("http://127.0.0.1:9/x", "http://169.254.169.254/latest/", f"http://{origin.host_ip}:80/"):
            r = alpha.post("/v1/webhooks", json={"name": "inside", "url": url, "event_types": ["*"]})
            assert r.status_code == 422, r.text
            assert [e["field"] for e in r.json()["errors"]] == ["body.url"], r.text
        r = alpha.post(
            "/v1/webhooks", json={"name": "bad", "url": origin.url("/a"), "event_types": ["VM created"]}
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.event_types[0]", r.text
        assert alpha.get("/v1/webhooks").json()["items"] == []  # nothing half made
        # a member may not send the tenant's events out
        member, _ = tenant_user(admin, srv, "hookm")
        assert (
            member.post(
                "/v1/webhooks", json={"name": "m", "url": origin.url("/m"), "event_types": ["*"]}
            ).status_code
            == 403
        )

        keyed = {"Idempotency-Key": "hook-alpha-1"}
        body = {"name": "alpha", "url": origin.url("/alpha?token=s3cr3t"), "event_types": ["volume.*"]}
        r = alpha.post("/v1/webhooks", json=body, headers=keyed)
        assert r.status_code == 201, r.text
        hook = r.json()
        secret = hook["secret"]
        assert secret.startswith("whsec_") and hook["url"] == origin.url("/alpha") + "?***"
        replay = alpha.post("/v1/webhooks", json=body, headers=keyed)
        assert replay.status_code == 201 and replay.json()["secret"] is None  # shown once only
        assert "secret" not in alpha.get(f"/v1/webhooks/{hook['id']}").json()
        subscribe(beta, "beta", origin.url("/beta"))

        volume(alpha, alpha_project, "va")
        volume(beta, beta_project, "vb")
        # deliveries are not ordered (volume.available may come first): pick the creation's
        got = wait_for(
            lambda: [p for p in posts(served, "/alpha?token=s3cr3t") if '"volume.created"' in p["body"]]
        )
        message = verify(secret, got[0])
        assert message["type"] == "volume.created" and message["data"]["data"]["name"] == "va"
        assert got[0]["headers"]["webhook-id"].startswith("msg_")
        # beta's events go to beta only
        wait_for(lambda: any("vb" in p["body"] for p in posts(served, "/beta")))
        assert not any("vb" in p["body"] for p in posts(served, "/alpha?token=s3cr3t"))
        # a changed body, or another secret, does not verify
        tampered = {**got[0], "body": got[0]["body"].replace("va", "vx")}
        with pytest.raises(WebhookVerificationError):
            verify(secret, tampered)
        log = alpha.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]
        done = [d for d in log if d["event_type"] == "volume.created"]
        assert done and done[0]["state"] == "succeeded" and done[0]["last_status"] == 204
        # another tenant sees neither the subscription nor its log
        assert beta.get(f"/v1/webhooks/{hook['id']}").status_code == 404
        assert beta.get(f"/v1/webhooks/{hook['id']}/deliveries").status_code == 404


def test_failures_retry_then_pause_and_the_backlog_survives_a_restart(env: Env) -> None:
    srv, origin, served = env
    with srv.client() as admin:
        tenant, project = tenant_user(admin, srv, "hookf", role="tenant-admin")
        hook = subscribe(tenant, "flaky", origin.url("/flaky"))
        (served / "status").write_text("500")
        try:
            # two test messages: 2 attempts each (the limit), the 3rd failure in a row pauses
            for _ in range(2):
                assert tenant.post(f"/v1/webhooks/{hook['id']}/test").status_code == 202
            paused = wait_for(
                lambda: (h := tenant.get(f"/v1/webhooks/{hook['id']}").json())["state"] == "paused" and h
            )
            assert "failed attempts in a row" in paused["paused_reason"]
            assert "HTTP 500" in paused["paused_reason"]
            log = tenant.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]
            assert log[-1]["last_status"] == 500 and "answered 500" in log[-1]["last_response"]
            seen = len(posts(served, "/flaky"))
            attempts = [p["headers"]["webhook-id"] for p in posts(served, "/flaky")]
            # every attempt of one message keeps its webhook-id (receivers drop duplicates by it)
            assert len(set(attempts)) < len(attempts)
            # paused: events queue, nothing is sent
            volume(tenant, project, "while-paused")
            wait_for(
                lambda: any(
                    d["event_type"] == "volume.created"
                    for d in tenant.get(
                        f"/v1/webhooks/{hook['id']}/deliveries", params={"state": "pending"}
                    ).json()["items"]
                )
            )
            assert len(posts(served, "/flaky")) == seen
        finally:
            (served / "status").unlink()
        # a kill -9 loses nothing: the queued event is in the outbox
        srv.kill9()
        srv.start()
        with srv.client(srv.token("hookf-user", "correct-horse-battery-9", "hookf")) as again:
            r = again.patch(f"/v1/webhooks/{hook['id']}", json={"state": "active"})
            assert r.status_code == 200 and r.json()["state"] == "active", r.text
            wait_for(lambda: any("while-paused" in p["body"] for p in posts(served, "/flaky")))
            failed = again.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"state": "failed"}).json()[
                "items"
            ]
            assert failed, "the test messages that exhausted their attempts are failed"
            r = again.post(f"/v1/webhooks/{hook['id']}/deliveries/{failed[0]['id']}/retry")
            assert r.status_code == 202, r.text
            wait_for(
                lambda: (
                    again.get(f"/v1/webhooks/{hook['id']}/deliveries", params={"state": "failed"}).json()[
                        "items"
                    ]
                    != failed
                )
            )


def test_a_rotated_secret_signs_beside_the_old_one_until_it_expires(env: Env) -> None:
    srv, origin, served = env
    with srv.client() as admin:
        tenant, _ = tenant_user(admin, srv, "hookr", role="tenant-admin")
        hook = subscribe(tenant, "rotating", origin.url("/rotating"))
        old = hook["secret"]
        r = tenant.post(f"/v1/webhooks/{hook['id']}/rotate-secret", json={"keep_previous_s": 3600})
        assert r.status_code == 200 and r.json()["signing_secrets"] == 2, r.text
        new = r.json()["secret"]
        assert tenant.post(f"/v1/webhooks/{hook['id']}/test").status_code == 202
        first = wait_for(lambda: posts(served, "/rotating"))[0]
        assert len(first["headers"]["webhook-signature"].split(" ")) == 2
        assert verify(old, first)["type"] == verify(new, first)["type"] == "webhook.test"
        # keep nothing of the old ones: only the newest secret signs
        newest = tenant.post(f"/v1/webhooks/{hook['id']}/rotate-secret", json={"keep_previous_s": 0}).json()
        assert newest["signing_secrets"] == 1
        assert tenant.post(f"/v1/webhooks/{hook['id']}/test").status_code == 202
        second = wait_for(lambda: posts(served, "/rotating")[1:])[0]
        assert verify(newest["secret"], second)["type"] == "webhook.test"
        for stale in (old, new):
            with pytest.raises(WebhookVerificationError):
                verify(stale, second)


def test_an_event_is_delivered_at_once_not_at_the_fallback_tick(env: Env) -> None:
    srv, origin, served = env
    with srv.client() as admin:
        tenant, project = tenant_user(admin, srv, "hookw", role="tenant-admin")
        subscribe(tenant, "prompt", origin.url("/prompt"), event_types=["volume.created"])
        for i in range(3):
            name = f"prompt-{i}"
            volume(tenant, project, name)
            returned = time.monotonic()
            while not any(f'"{name}"' in p["body"] for p in posts(served, "/prompt")):
                took = time.monotonic() - returned
                assert took < 1.0, f"{name} not delivered within 1 s of the API call (tick: 30 s)"
                time.sleep(0.02)
        # a burst (the tenant's quota is 10 volumes): every event delivered, none twice
        for i in range(6):
            volume(tenant, project, f"burst-{i}")
        wait_for(lambda: sum('"burst-' in p["body"] for p in posts(served, "/prompt")) >= 6, 10.0)
        ids = [p["headers"]["webhook-id"] for p in posts(served, "/prompt")]
        assert len(ids) == len(set(ids)) == 9
