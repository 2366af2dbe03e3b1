"""Lifecycle hooks of scaling groups in process, with a real HTTP receiver on loopback.

The control plane runs as in ``test_scaling_groups_api`` (every task handler, a stand-in agent that
answers as a healthy host), with ``NOVACRON_EGRESS_ALLOW`` opening 127.0.0.0/8 so the hooks may call
a receiver this test starts on 127.0.0.2 (127.0.0.1 is the platform's own and stays closed). The
receiver checks each event's signature with the hook's secret itself (HMAC-SHA256 over
``<t>.<body>``), records what it saw, and per path: keeps silent, fails with 503, or answers through
the API as the tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import http.server
import ipaddress
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from novacron.cli import scaling as scaling_cli
from novacron.cli.client import Client
from novacron.db.models import VM, LbMember, ScalingLifecycleHook
from tests.integration.test_lb_resources import problem_fields
from tests.integration.test_scaling_groups_api import (
    BASE,
    Scaling,
    _activities,
    _body,
    _members,
    _pool_vms,
    run_all,
    scaling_world,
)

SECRET = "s3cret-for-the-hook-receiver"


@dataclass
class Seen:
    """One event the receiver got: its path, document, whether the signature was right, and what
    the test's ``on`` callback observed at that moment."""

    path: str
    doc: dict[str, Any]
    signed: bool
    at: float
    observed: Any = None


@dataclass
class Receiver:
    url: str
    seen: list[Seen] = field(default_factory=list)
    #: path -> called with the event before the answer: what it returns is kept in ``observed``
    on: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)

    def of(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]


def _verify(header: str, body: bytes) -> bool:
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    mac = hmac.new(SECRET.encode(), f"{parts.get('t')}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, parts.get("v1", ""))


def _handler(receiver: Receiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            doc = json.loads(body)
            seen = Seen(
                self.path, doc, _verify(self.headers.get("NovaCron-Signature", ""), body), time.time()
            )
            if self.path in receiver.on:
                seen.observed = receiver.on[self.path](doc)
            receiver.seen.append(seen)
            status = 503 if self.path == "/fail" else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Scaling, Receiver]]:
    allow = (ipaddress.ip_network("127.0.0.0/8"),)
    server = http.server.ThreadingHTTPServer(("127.0.0.2", 0), http.server.BaseHTTPRequestHandler)
    receiver = Receiver(f"http://127.0.0.2:{server.server_address[1]}")
    server.RequestHandlerClass = _handler(receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with scaling_world(tmp_path_factory.mktemp("hooks"), egress_allow=allow) as sc:
            yield sc, receiver
    finally:
        server.shutdown()
        server.server_close()


def _group(sc: Scaling, name: str, desired: int, **extra: Any) -> None:
    r = sc.world.client.post(
        BASE, json=_body(sc, name, desired=desired, **extra), headers=sc.world.alpha.headers
    )
    assert r.status_code == 201, r.text


def _hook(sc: Scaling, group: str, url: str, **extra: Any) -> dict[str, Any]:
    body = {"name": "check", "transition": "launching", "url": url, "secret": SECRET, "timeout_s": 2, **extra}
    r = sc.world.client.post(f"{BASE}/{group}/lifecycle-hooks", json=body, headers=sc.world.alpha.headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _hook_activities(sc: Scaling, group: str) -> list[dict[str, Any]]:
    return [a for a in _activities(sc, group) if a["action"] == "lifecycle_hook"]


def test_a_launch_hook_that_never_answers_times_out_to_its_default(hooked: tuple[Scaling, Receiver]) -> None:
    sc, receiver = hooked
    c, alpha = sc.world.client, sc.world.alpha
    # desired 0 first: the hooks exist before the first launch
    _group(sc, "silent", 0)
    _group(sc, "refused", 0, lb_pools=[])
    _hook(sc, "silent", f"{receiver.url}/silent")
    _hook(sc, "refused", f"{receiver.url}/fail", default_result="abandon")

    def members_now(doc: dict[str, Any]) -> list[dict[str, Any]]:
        return list(c.get(f"{BASE}/{doc['group']['id']}/members", headers=alpha.headers).json())

    receiver.on["/silent"] = members_now
    run_all(sc.world)
    for group in ("silent", "refused"):
        assert c.patch(f"{BASE}/{group}", json={"desired": 1}, headers=alpha.headers).status_code == 200
    began = time.monotonic()
    run_all(sc.world)
    assert time.monotonic() - began >= 2
    # while it waited, the member was pending_launch on the hook, with its deadline
    [event] = receiver.of("/silent")
    assert event.signed and event.doc["transition"] == "launching" and event.doc["vm"]["addresses"]
    [waiting] = event.observed
    assert waiting["state"] == "pending_launch" and waiting["waiting_on"]["hook"] == "check", waiting
    assert waiting["vm_id"] == event.doc["vm"]["id"] and waiting["waiting_on"]["deadline"]
    # no answer: continue by default, the member joined the pool
    [member] = _members(sc, "silent")
    assert member["state"] == "in_service" and member["waiting_on"] is None
    assert member["vm_id"] in _pool_vms(sc)
    [decided] = _hook_activities(sc, "silent")
    assert decided["numbers"]["result"] == "continue" and decided["numbers"]["by"] == "timeout", decided
    assert 1.9 <= decided["numbers"]["waited_s"] < 3.5 and "timed out" in decided["reason"], decided
    # the receiver answered 503 each time: retried with backoff, then abandon by default
    attempts = receiver.of("/fail")
    assert 2 <= len(attempts) <= 4 and all(a.signed for a in attempts), attempts
    gaps = [b.at - a.at for a, b in zip(attempts, attempts[1:], strict=False)]
    assert gaps == sorted(gaps) and gaps[0] >= 0.4, gaps
    assert abs(attempts[0].at - event.at) < 1.0  # the two groups waited at the same time
    abandoned_vm = attempts[0].doc["vm"]["id"]
    assert _members(sc, "refused") == []
    with sc.world.db.session() as s:
        assert s.get(VM, abandoned_vm) is None
    [decided] = _hook_activities(sc, "refused")
    numbers = decided["numbers"]
    assert (numbers["result"], numbers["by"], numbers["vm_id"]) == ("abandon", "timeout", abandoned_vm)
    assert numbers["attempts"] == len(attempts) and numbers["delivery_error"] == "HTTP 503", numbers
    scale = next(a for a in _activities(sc, "refused") if a["action"] == "scale_out")
    assert scale["numbers"]["abandoned"] == [abandoned_vm], scale
    # the action is decided: its default again is the same answer, another one a conflict; another
    # tenant does not even see it
    token = event.doc["token"]
    path = f"{BASE}/silent/lifecycle-actions"
    keyed = {**alpha.headers, "Idempotency-Key": "answer-silent"}
    r = c.post(path, json={"token": token, "result": "continue"}, headers=keyed)
    assert r.status_code == 200 and r.json()["result"] == "continue", r.text
    again = c.post(path, json={"token": token, "result": "continue"}, headers=keyed)
    assert again.json() == r.json() and again.headers.get("Idempotent-Replayed") == "true"
    r = c.post(path, json={"token": token, "result": "abandon"}, headers=alpha.headers)
    assert r.status_code == 409, r.text
    group_id = event.doc["group"]["id"]
    r = c.post(f"{BASE}/{group_id}/lifecycle-actions", json={"token": token, "result": "abandon"},
               headers=sc.world.beta.headers)  # fmt: skip
    assert r.status_code == 404, r.text
    r = c.post(path, json={"token": "not-a-token", "result": "continue"}, headers=alpha.headers)
    assert r.status_code == 404, r.text


def test_an_answer_through_the_api_ends_the_wait_at_once(hooked: tuple[Scaling, Receiver]) -> None:
    sc, receiver = hooked
    c, alpha = sc.world.client, sc.world.alpha
    _group(sc, "answered", 0)
    _hook(sc, "answered", f"{receiver.url}/answer", timeout_s=60, default_result="abandon")

    def answer(doc: dict[str, Any]) -> int:
        r = c.post(f"{BASE}/{doc['group']['id']}/lifecycle-actions",
                   json={"token": doc["token"], "result": "continue"}, headers=alpha.headers)  # fmt: skip
        return int(r.status_code)

    receiver.on["/answer"] = answer
    run_all(sc.world)
    assert c.patch(f"{BASE}/answered", json={"desired": 1}, headers=alpha.headers).status_code == 200
    began = time.monotonic()
    run_all(sc.world)
    assert time.monotonic() - began < 15  # far from the 60 s default
    [event] = receiver.of("/answer")
    assert event.signed and event.observed == 200
    [member] = _members(sc, "answered")
    assert member["state"] == "in_service" and member["vm_id"] == event.doc["vm"]["id"]
    assert member["vm_id"] in _pool_vms(sc)
    [decided] = _hook_activities(sc, "answered")
    assert (decided["numbers"]["result"], decided["numbers"]["by"]) == ("continue", "answer"), decided
    assert decided["numbers"]["waited_s"] < 5 and decided["numbers"]["attempts"] == 1


def test_a_terminate_hook_is_called_after_the_drain_and_before_the_delete(
    hooked: tuple[Scaling, Receiver],
) -> None:
    sc, receiver = hooked
    c, alpha = sc.world.client, sc.world.alpha
    _group(sc, "shrinking", 2)
    run_all(sc.world)
    before = {m["vm_id"] for m in _members(sc, "shrinking")}
    _hook(sc, "shrinking", f"{receiver.url}/terminate", name="bye", transition="terminating", timeout_s=30)

    def look_then_abandon(doc: dict[str, Any]) -> dict[str, Any]:
        vm_id = doc["vm"]["id"]
        with sc.world.db.read_session() as s:
            in_pool = s.scalar(select(LbMember.id).where(LbMember.vm_id == vm_id)) is not None
            vm_exists = s.get(VM, vm_id) is not None
        states = {m["vm_id"]: m["state"] for m in _members(sc, "shrinking")}
        r = c.post(f"{BASE}/shrinking/lifecycle-actions", json={"token": doc["token"], "result": "abandon"},
                   headers=alpha.headers)  # fmt: skip
        return {
            "in_pool": in_pool,
            "vm_exists": vm_exists,
            "state": states.get(vm_id),
            "answer": r.status_code,
        }

    receiver.on["/terminate"] = look_then_abandon
    assert c.patch(f"{BASE}/shrinking", json={"desired": 1}, headers=alpha.headers).status_code == 200
    run_all(sc.world)
    [event] = receiver.of("/terminate")
    gone = event.doc["vm"]["id"]
    assert event.signed and event.doc["transition"] == "terminating" and gone in before
    # drained and out of the pool, its VM still there, the member pending_terminate
    assert event.observed == {
        "in_pool": False,
        "vm_exists": True,
        "state": "pending_terminate",
        "answer": 200,
    }
    # abandon on terminate still ends in the delete; the result is recorded
    with sc.world.db.session() as s:
        assert s.get(VM, gone) is None
    assert {m["vm_id"] for m in _members(sc, "shrinking")} == before - {gone}
    [decided] = _hook_activities(sc, "shrinking")
    assert decided["numbers"]["transition"] == "terminating" and decided["numbers"]["vm_id"] == gone
    assert (decided["numbers"]["result"], decided["numbers"]["by"]) == ("abandon", "answer"), decided


def test_a_restart_mid_wait_resumes_the_same_action(hooked: tuple[Scaling, Receiver]) -> None:
    sc, receiver = hooked
    c, alpha = sc.world.client, sc.world.alpha
    _group(sc, "restarted", 0, lb_pools=[])
    _hook(sc, "restarted", f"{receiver.url}/restart", timeout_s=4)
    run_all(sc.world)
    assert c.patch(f"{BASE}/restarted", json={"desired": 1}, headers=alpha.headers).status_code == 200

    def waiting() -> bool:
        members = _members(sc, "restarted")
        return bool(members) and bool((members[0]["waiting_on"] or {}).get("delivered"))

    run_all(sc.world, until=waiting)  # the server dies while the group waits
    [member] = _members(sc, "restarted")
    deadline = member["waiting_on"]["deadline"]
    run_all(sc.world)  # a new runner resumes the task at its wait: same token, same deadline
    [event] = receiver.of("/restart")  # delivered once, not again on the resume
    assert event.doc["deadline"].replace("+00:00", "") == deadline.replace("Z", "").replace("+00:00", "")
    [member] = _members(sc, "restarted")
    assert member["state"] == "in_service" and member["vm_id"] == event.doc["vm"]["id"]
    [decided] = _hook_activities(sc, "restarted")
    assert (decided["numbers"]["result"], decided["numbers"]["by"]) == ("continue", "timeout"), decided
    assert 3.9 <= decided["numbers"]["waited_s"] < 6, decided  # the 4 s counted from the first start
    # the token the receiver got is still the action's: answering it now is a conflict, not a 404
    r = c.post(f"{BASE}/restarted/lifecycle-actions", json={"token": event.doc["token"], "result": "abandon"},
               headers=alpha.headers)  # fmt: skip
    assert r.status_code == 409, r.text


def test_hook_validation_and_a_secret_never_shown(hooked: tuple[Scaling, Receiver]) -> None:
    sc, receiver = hooked
    c, alpha, beta = sc.world.client, sc.world.alpha, sc.world.beta
    _group(sc, "checked", 0, lb_pools=[])
    path = f"{BASE}/checked/lifecycle-hooks"
    url = f"{receiver.url}/x?key=k3y-in-the-query"
    good = {"name": "ok", "transition": "launching", "url": url, "secret": SECRET}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"url": "http://10.20.30.40/hook"}, "body.url"),  # private, not allowed by the admin
        ({"url": "http://169.254.169.254/latest"}, "body.url"),  # link-local (metadata)
        ({"url": "http://127.0.0.1:9/hook"}, "body.url"),  # the platform's own address
        ({"url": "ftp://example.com/"}, "body.url"),
        ({"secret": "short"}, "body.secret"),
        ({"transition": "rebooting"}, "body.transition"),
        ({"default_result": "maybe"}, "body.default_result"),
        ({"timeout_s": 0}, "body.timeout_s"),
    ]
    for change, fld in cases:
        r = c.post(path, json={**good, **change}, headers=alpha.headers)
        assert r.status_code == 422 and fld in problem_fields(r), (change, r.text)
    key = {**alpha.headers, "Idempotency-Key": "hook-ok"}
    first = c.post(path, json=good, headers=key)
    assert first.status_code == 201 and "secret" not in first.json(), first.text
    assert first.json()["url"] == f"{receiver.url}/x?***"  # shown without its query
    again = c.post(path, json=good, headers=key)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert c.post(path, json=good, headers=alpha.headers).status_code == 409  # name taken
    # sealed at rest (the URL too: a credential may be in it); no GET shows the secret
    with sc.world.db.read_session() as s:
        stored = s.scalar(select(ScalingLifecycleHook).where(ScalingLifecycleHook.name == "ok"))
        assert stored is not None and SECRET not in stored.signing_secret and receiver.url not in stored.url
    groups = [g["name"] for g in c.get(BASE, headers=alpha.headers).json()["items"]]
    for group in groups:
        for tail in ("", "/members", "/activities", "/lifecycle-hooks"):
            r = c.get(f"{BASE}/{group}{tail}", headers=alpha.headers)
            assert r.status_code == 200 and SECRET not in r.text and "k3y" not in r.text, (group, tail)
    # another tenant sees neither the hooks nor the group
    assert c.get(path, headers=beta.headers).status_code == 404
    assert c.post(path, json={**good, "name": "spy"}, headers=beta.headers).status_code == 404
    assert c.delete(f"{path}/ok", headers=beta.headers).status_code == 404
    assert c.delete(f"{path}/ok", headers=alpha.headers).status_code == 204
    assert c.get(path, headers=alpha.headers).json() == []


def test_the_cli_adds_lists_answers_and_deletes_hooks(
    hooked: tuple[Scaling, Receiver], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sc, receiver = hooked
    c, alpha = sc.world.client, sc.world.alpha
    token = alpha.headers["Authorization"].removeprefix("Bearer ")
    transport = c._transport
    client = Client(
        "http://testserver", token=token, credentials_path=tmp_path / "c.json", transport=transport
    )
    monkeypatch.setattr(scaling_cli, "client_of", lambda _ctx: client)
    run = CliRunner().invoke
    _group(sc, "by-cli", 0, lb_pools=[])
    add = ["hook", "add", "by-cli", "gate", "--transition", "launching", "--url", f"{receiver.url}/cli",
           "--secret", SECRET, "--timeout", "60", "--default-result", "abandon"]  # fmt: skip
    made = run(scaling_cli.app, add)
    assert made.exit_code == 0 and "gate" in made.output and SECRET not in made.output, made.output
    listed = run(scaling_cli.app, ["hook", "list", "by-cli"])
    assert listed.exit_code == 0 and "launching" in listed.output and SECRET not in listed.output
    run_all(sc.world)
    assert c.patch(f"{BASE}/by-cli", json={"desired": 1}, headers=alpha.headers).status_code == 200

    def delivered() -> bool:
        members = _members(sc, "by-cli")
        return bool(members) and bool((members[0]["waiting_on"] or {}).get("delivered"))

    run_all(sc.world, until=delivered)
    shown = run(scaling_cli.app, ["show", "by-cli"])
    assert shown.exit_code == 0 and "pending_launch" in shown.output and "hook gate" in shown.output
    [event] = receiver.of("/cli")
    done = run(scaling_cli.app, ["complete-action", "by-cli", event.doc["token"], "--result", "continue"])
    assert done.exit_code == 0 and "continue" in done.output, done.output
    run_all(sc.world)
    [member] = _members(sc, "by-cli")
    assert member["state"] == "in_service"
    [decided] = _hook_activities(sc, "by-cli")
    assert (decided["numbers"]["result"], decided["numbers"]["by"]) == ("continue", "answer"), decided
    assert run(scaling_cli.app, ["hook", "delete", "by-cli", "gate"]).exit_code == 0
    assert c.get(f"{BASE}/by-cli/lifecycle-hooks", headers=alpha.headers).json() == []
