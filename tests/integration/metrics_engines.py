"""Real metrics engines for tests: VictoriaMetrics and Prometheus, started on loopback with given
history already stored (VictoriaMetrics' import API; Prometheus blocks built by ``promtool``), and
the API callers that read them."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from novacron.context import Context
from novacron.db.base import Database
from novacron.db.models import VM, Host
from novacron.monitoring.process import SupervisedProcess
from novacron.monitoring.query import PROMETHEUS, VICTORIAMETRICS, StoreEndpoint
from novacron.monitoring.series import SeriesMap
from novacron.monitoring.stack import MonitoringStack
from novacron.monitoring.store import MetricsStore
from tests.conftest import TENANT_PASSWORD, free_port, require


def login(client: TestClient, username: str, password: str) -> dict[str, str]:
    """Headers carrying a fresh token of ``username``."""
    r = client.post("/v1/tokens", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def tenant_admin(admin: TestClient, tenant: str) -> tuple[TestClient, str]:
    """A tenant-admin of a new tenant ``tenant`` on ``admin``'s app: its client and the tenant's id."""
    tenant_id = admin.post("/v1/tenants", json={"name": tenant}).json()["id"]
    user = {
        "username": f"{tenant}-ops",
        "password": TENANT_PASSWORD,
        "role": "tenant-admin",
        "tenant_id": tenant_id,
    }
    assert admin.post("/v1/users", json=user).status_code == 201
    headers = login(admin, f"{tenant}-ops@{tenant}", TENANT_PASSWORD)
    return TestClient(admin.app, headers=headers), str(tenant_id)


def tenant_viewer(client: TestClient, admin: dict[str, str], name: str) -> tuple[str, dict[str, str]]:
    """A new tenant ``name`` and the headers of a viewer of it: (tenant id, headers)."""
    tenant_id = client.post("/v1/tenants", json={"name": name}, headers=admin).json()["id"]
    user = {"username": "viewer", "password": TENANT_PASSWORD, "role": "viewer", "tenant_id": tenant_id}
    assert client.post("/v1/users", json=user, headers=admin).status_code == 201
    return str(tenant_id), login(client, f"viewer@{name}", TENANT_PASSWORD)


def vm_and_host(client: TestClient, admin: dict[str, str], db: Database, tenant_id: str) -> None:
    """A VM of the tenant on host h-1, as rows (no QEMU needed to chart what the store holds)."""
    r = client.post("/v1/projects", json={"name": "main", "tenant_id": tenant_id}, headers=admin)
    assert r.status_code == 201, r.text
    with db.session() as session:
        session.add(Host(id="h-1", name="node-1", driver="simulated", accelerator="tcg", cpus=2, ram_mb=4096))
        session.add(
            VM(
                id="vm-1",
                name="web",
                project_id=r.json()["id"],
                tenant_id=tenant_id,
                host_id="h-1",
                vcpus=1,
                ram_mb=128,
                disk_gb=1,
            )
        )


@dataclass(frozen=True)
class Series:
    """One series's samples: (unix seconds, value) in time order."""

    name: str
    labels: dict[str, str]
    samples: list[tuple[float, float]] = field(default_factory=list)

    def selector(self) -> str:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(self.labels.items()))
        return f"{self.name}{{{labels}}}"


def _binary(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed (scripts/setup.sh installs it)")
    assert path is not None
    return path


def victoria_import(url: str, series: Iterable[Series]) -> None:
    """Store samples through ``/api/v1/import/prometheus`` and make them searchable at once."""
    lines = (f"{s.selector()} {v!r} {round(t * 1000)}" for s in series for t, v in s.samples)
    httpx.post(
        f"{url}/api/v1/import/prometheus", content="\n".join(lines).encode(), timeout=120
    ).raise_for_status()
    httpx.get(f"{url}/internal/force_flush", timeout=60).raise_for_status()


@contextmanager
def victoriametrics(tmp_path: Path, series: Iterable[Series] = ()) -> Iterator[StoreEndpoint]:
    """A VictoriaMetrics holding ``series``, as the node starts it (no query latency offset)."""
    port = free_port()
    argv = [
        _binary("victoria-metrics"),
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-storageDataPath={tmp_path / 'vm-data'}",
        "-retentionPeriod=100y",
        "-search.latencyOffset=0s",
        "-search.disableCache",
    ]
    url = f"http://127.0.0.1:{port}"
    engine = SupervisedProcess("victoria-metrics", argv, f"{url}/health", tmp_path / "vm.log")
    engine.start()
    try:
        victoria_import(url, series)
        yield StoreEndpoint(url, VICTORIAMETRICS)
    finally:
        engine.stop()


def _openmetrics(series: Iterable[Series]) -> str:
    by_name = sorted(series, key=lambda s: s.name)
    lines = [f"{s.selector()} {v!r} {t:.3f}" for s in by_name for t, v in s.samples]
    return "\n".join([*lines, "# EOF", ""])


@contextmanager
def prometheus(tmp_path: Path, series: Iterable[Series] = ()) -> Iterator[StoreEndpoint]:
    """A Prometheus holding ``series`` (written as TSDB blocks by promtool before it starts)."""
    data = tmp_path / "prom-data"
    data.mkdir()
    source = tmp_path / "history.om"
    source.write_text(_openmetrics(series))
    subprocess.run(
        [_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        check=True,
        capture_output=True,
    )
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {}\n")
    port = free_port()
    argv = [
        _binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        "--storage.tsdb.retention.time=100y",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    url = f"http://127.0.0.1:{port}"
    engine = SupervisedProcess("prometheus", argv, f"{url}/-/ready", tmp_path / "prometheus.log")
    engine.start()
    try:
        yield StoreEndpoint(url, PROMETHEUS)
    finally:
        engine.stop()


def attach(ctx: Context, endpoint: StoreEndpoint) -> None:
    """Point an in-process app's store seam (``ctx.metrics_store``) at a test's engine."""
    store = MetricsStore(endpoint.engine, endpoint.query_url, f"{endpoint.query_url}/api/v1/write")
    ctx.monitoring = MonitoringStack(store, SeriesMap(str), [])
