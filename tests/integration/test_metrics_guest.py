"""A real QEMU guest's series in the node's default store (VictoriaMetrics), labelled with its tenancy.

Real parts: the server process, QEMU, the embedded agent's sampling of the QEMU process and of the
host (psutil), VictoriaMetrics started by the node, its Prometheus query API.
"""

from __future__ import annotations

import pytest

from novacron.monitoring.series import VM_SERIES
from tests.conftest import Guest, Server, import_guest_image, tenant_user, wait_task
from tests.integration.test_metrics_store import query, store_url, wait_query

pytestmark = pytest.mark.qemu


def test_a_guests_series_carry_its_tenancy_and_the_host_counts_its_qemu(server: Server, guest: Guest) -> None:
    with server.client() as admin:
        import_guest_image(admin, guest)
        member, project_id = tenant_user(admin, server, "watcher")
        tenant_id = admin.get(f"/v1/projects/{project_id}").json()["tenant_id"]
    with member:
        body = {"name": "g", "image": "test-guest", "flavor": "tiny", "project_id": project_id}
        r = member.post("/v1/vms", json=body)
        assert r.status_code == 202, r.text
        assert wait_task(member, r.json()["task_id"])["state"] == "succeeded"
        vm = member.get(f"/v1/vms/{r.json()['vm']['id']}").json()
    url = store_url(server, "victoriametrics")

    rate = wait_query(url, f'rate(novacron_vm_process_cpu_seconds_total{{vm_id="{vm["id"]}"}}[20s]) > 0')
    assert rate[0]["metric"]["tenant_id"] == tenant_id
    assert rate[0]["metric"]["project_id"] == project_id
    assert rate[0]["metric"]["host_id"] == vm["host_id"]
    # guest memory comes once the guest's balloon driver reports (the test guest loads it)
    wait_query(url, f'novacron_vm_guest_memory_available_bytes{{vm_id="{vm["id"]}"}}', timeout_s=120)
    found = query(url, f'{{__name__=~"novacron_vm_.+", vm_id="{vm["id"]}"}}')
    assert sorted(s["metric"]["__name__"] for s in found) == sorted(VM_SERIES.values())
    value = {s["metric"]["__name__"]: float(s["value"][1]) for s in found}
    # the QEMU process's RSS is labelled as such, apart from the guest's own memory (128 MiB flavor)
    assert value["novacron_vm_process_resident_memory_bytes"] > 16 << 20
    assert (
        0 < value["novacron_vm_guest_memory_available_bytes"] <= value["novacron_vm_guest_memory_total_bytes"]
    )
    assert value["novacron_vm_guest_memory_total_bytes"] <= 512 << 20
    assert 0 < value["novacron_vm_cpu_seconds_total"] <= value["novacron_vm_process_cpu_seconds_total"]
    qemu = wait_query(url, f'novacron_host_qemu_processes{{host_id="{vm["host_id"]}"}} == 1')
    assert "tenant_id" not in qemu[0]["metric"]
