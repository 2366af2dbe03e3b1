"""The trace view in a real browser: a tenant member finds the trace of its VM create in the list
and reads its waterfall (API, task, steps, agent operations, QMP commands); another tenant's member
gets "Not found" for it; both pages at phone and desktop width, light and dark, pass axe-core."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import wait_task
from tests.e2e.browser import Browser, page_problems
from tests.e2e.conftest import DESKTOP, PASSWORD, PHONE, Cluster


def _span_names(client: Any, trace_id: str) -> set[str]:
    """The names of the trace's spans stored so far (none: a 404 until the first batch lands)."""
    r = client.get(f"/v1/traces/{trace_id}")
    if r.status_code == 404:
        return set()
    assert r.status_code == 200, r.text
    return {s["name"] for s in r.json()["spans"]}


@pytest.fixture(scope="module")
def traced_create(cluster: Cluster) -> Iterator[str]:
    """The trace id of a VM create of tenant alpha, once its trace is whole in the store."""
    import time

    member = cluster.server.token(cluster.tenants["alpha"][0], PASSWORD, "alpha")
    with cluster.server.client(member) as alpha:
        r = alpha.post("/v1/vms", json={"name": "traced-vm", "image": "test-guest", "flavor": "tiny"})
        assert r.status_code == 202, r.text
        trace_id = r.headers["x-trace-id"]
        assert wait_task(alpha, r.json()["task_id"], 180)["state"] == "succeeded"
        deadline = time.monotonic() + 30
        whole = {"task vm.create", "agent launch", "agent wait_state"}
        while not whole <= _span_names(alpha, trace_id):
            assert time.monotonic() < deadline, "the trace never became whole"
            time.sleep(0.2)
        yield trace_id


def test_a_member_reads_the_waterfall_of_its_create(
    cluster: Cluster, browser: Any, traced_create: str
) -> None:
    alpha = Browser(browser, cluster.server.url, DESKTOP)
    beta = Browser(browser, cluster.server.url, PHONE)
    try:
        alpha.login(cluster.tenants["alpha"][0], PASSWORD, tenant="alpha")
        alpha.go("/traces")
        alpha.page.click(f"a[href='#/traces/{traced_create}']")
        alpha.page.wait_for_selector("tr[data-span='agent launch']")
        text = alpha.main_text()
        for name in (
            "POST /v1/vms",
            "task vm.create",
            "step launch",
            "hostop launch",
            "agent launch",
            "qmp ",
        ):
            assert name in text, name
        # each span's bar lies within the trace's timeline
        widths = alpha.page.eval_on_selector_all(".waterfall-bar", "els => els.map(e => e.style.width)")
        assert widths and all(0 < float(w.rstrip("%")) <= 100.5 for w in widths)
        assert alpha.errors == []

        beta.login(cluster.tenants["beta"][0], PASSWORD, tenant="beta")
        beta.go("/traces")
        assert traced_create[:12] not in beta.main_text()
        beta.go(f"/traces/{traced_create}")
        assert beta.page.inner_text("main h1") == "Not found"
    finally:
        alpha.close()
        beta.close()


def test_trace_pages_phone_and_desktop_light_and_dark(
    cluster: Cluster, browser: Any, traced_create: str
) -> None:
    problems: list[str] = []
    for size, viewport in (("phone", PHONE), ("desktop", DESKTOP)):
        for scheme in ("light", "dark"):
            b = Browser(browser, cluster.server.url, viewport, scheme)
            try:
                b.login("admin", cluster.server.admin_password)
                for route, name in (("/traces", "traces"), (f"/traces/{traced_create}", "traces-detail")):
                    b.go(route)
                    problems += page_problems(b, route, name, size, scheme)
            finally:
                b.close()
    assert problems == [], "\n".join(problems)
