"""A real Prometheus (Debian's ``/usr/bin/prometheus``, installed by scripts/setup.sh) for tests.

:func:`start_prometheus` writes a config with the scrape jobs a test gives, starts Prometheus on a
free loopback port with a fresh data directory (supervised by the node's own
``monitoring/process.py``, so it dies with the test process), and waits until it is ready.
:meth:`Prometheus.wait_for` polls a PromQL query over the HTTP API until its answer satisfies the
test, with a deadline. Under ``CI`` a missing binary fails the test (``tests.conftest.require``).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from novacron.monitoring.process import SupervisedProcess
from tests.conftest import free_port, require

BINARY = "/usr/bin/prometheus"

Vector = list[dict[str, Any]]


@dataclass
class Prometheus:
    url: str
    process: SupervisedProcess
    workdir: Path

    def query(self, promql: str) -> Vector:
        """The instant vector ``promql`` evaluates to now."""
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body
        return list(body["data"]["result"])

    def wait_for(
        self, promql: str, accept: Callable[[Vector], bool] = bool, timeout_s: float = 30.0
    ) -> Vector:
        """Poll ``promql`` until ``accept`` takes its answer (by default: any series); AssertionError
        naming the last answer and the scrape targets' health after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        answer: Vector = []
        while time.monotonic() < deadline:
            answer = self.query(promql)
            if accept(answer):
                return answer
            time.sleep(0.2)
        targets = httpx.get(f"{self.url}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        health = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in targets]
        raise AssertionError(f"{promql}: {answer} after {timeout_s} s; targets: {health}")

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def bearer_job(name: str, target: str, credentials_file: Path, interval: str = "1s") -> dict[str, Any]:
    """A scrape job for ``target`` (``host:port``, plain HTTP) with a bearer token read from a file."""
    return {
        "job_name": name,
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "metrics_path": "/metrics",
        "authorization": {"type": "Bearer", "credentials_file": str(credentials_file)},
        "static_configs": [{"targets": [target]}],
    }


@contextmanager
def start_prometheus(workdir: Path, scrape_configs: list[dict[str, Any]]) -> Iterator[Prometheus]:
    """Prometheus scraping ``scrape_configs`` (its config is JSON, which is YAML), stopped on exit."""
    require(Path(BINARY).exists(), f"{BINARY} is not installed (scripts/setup.sh installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": scrape_configs}))
    port = free_port()
    argv = [
        BINARY,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    url = f"http://127.0.0.1:{port}"
    process = SupervisedProcess("prometheus", argv, f"{url}/-/ready", workdir / "prometheus.log")
    prometheus = Prometheus(url, process, workdir)
    try:
        process.start()
        yield prometheus
    finally:
        prometheus.stop()
