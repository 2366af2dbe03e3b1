"""The metrics store: where the platform's time series live, behind one small interface.

Writes use Prometheus remote write and reads the Prometheus HTTP query API, so any engine that
speaks both serves: VictoriaMetrics (the default, run by the node), Prometheus 2.42 with its
remote-write receiver (run by the node too), or an ``external`` store at two URLs (a VictoriaMetrics
cluster, Mimir, Thanos, ...). ``embedded_engine`` describes the process the node runs for the first
two (``stack.py`` runs it).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from novacron.errors import Unavailable
from novacron.monitoring import remote_write
from novacron.monitoring.blocks import Chunk, encode_chunks
from novacron.monitoring.process import SupervisedProcess
from novacron.monitoring.query import PromAPI, Scope

ENGINES = ("victoriametrics", "prometheus", "external")
#: engine -> the path of its remote-write receiver under its base URL
WRITE_PATHS = {"victoriametrics": "/api/v1/write", "prometheus": "/api/v1/write"}


class StoreUnavailable(Unavailable):
    """The metrics store does not answer (down, restarting, unreachable)."""


class MetricsStore:
    """A Prometheus-compatible store: remote write in, PromQL out.

    ``query_url`` is the Prometheus HTTP API base (``{query_url}/api/v1/query``); ``engine`` is
    ``victoriametrics``, ``prometheus`` or ``external``. ``query``/``query_range`` answer the API's
    ``data`` object through the same client and error mapping as tenant queries (``PromAPI``
    unscoped): a query the engine refuses raises ``InvalidInput("query", ...)``, a store that does
    not answer ``Unavailable``; a write it does not take raises ``StoreUnavailable``. Safe to use
    from several threads.
    """

    def __init__(self, engine: str, query_url: str, write_url: str, *, timeout_s: float = 10.0) -> None:
        self.engine = engine
        self.query_url = query_url.rstrip("/")
        self.write_url = write_url
        self.timeout_s = timeout_s
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        # one keep-alive client per thread (httpx clients are not meant to be shared across threads)
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=self.timeout_s)
        return client

    @staticmethod
    def prepare(chunks: Sequence[Chunk]) -> bytes:
        """The remote-write request body of ``chunks`` (encoded and compressed)."""
        return remote_write.compress(encode_chunks(chunks))

    def send(self, body: bytes) -> None:
        """Send a request ``prepare`` made. ``StoreUnavailable`` when the store is down or busy
        (send again later); ``remote_write.RemoteWriteRejected`` when it refuses it."""
        try:
            remote_write.post(self._client(), self.write_url, body)
        except httpx.HTTPError as exc:
            raise StoreUnavailable(
                f"The metrics store at {self.write_url} did not take the samples: {exc}"
            ) from exc

    def query(self, promql: str, at: float | None = None, params: Mapping[str, str] | None = None) -> Any:
        """An instant query (``/api/v1/query``) at unix time ``at`` (now when None), over every
        series: the answer's ``data``. Errors as ``monitoring/query.PromAPI`` raises them."""
        args = [("query", promql), *(params or {}).items()]
        if at is not None:
            args.append(("time", repr(at)))
        return PromAPI(self, Scope(None)).get("query", args)["data"]

    def query_range(  # noqa: PLR0913 - the query API's own parameters
        self,
        promql: str,
        start: float,
        end: float,
        step: float,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """A range query (``/api/v1/query_range``) from ``start`` to ``end`` (unix s) every ``step`` s."""
        args = [("query", promql), ("start", repr(start)), ("end", repr(end)), ("step", repr(step))]
        return PromAPI(self, Scope(None)).get("query_range", [*args, *(params or {}).items()])["data"]

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None


@dataclass(frozen=True)
class EngineConfig:
    """What an embedded engine is started with."""

    engine: str
    data_dir: Path
    retention: str
    port: int


def embedded_engine(config: EngineConfig) -> SupervisedProcess:
    """The supervised process of an embedded engine, listening on 127.0.0.1:``port`` only, its
    data under ``data_dir`` (made private by the caller's umask)."""
    address = f"127.0.0.1:{config.port}"
    if config.engine == "victoriametrics":
        argv = [
            _binary("victoria-metrics"),
            f"-httpListenAddr={address}",
            f"-storageDataPath={config.data_dir}",
            f"-retentionPeriod={config.retention}",
            # without it a query lags 30 s behind the newest samples, and so would every alert
            "-search.latencyOffset=0s",
        ]
        ready = f"http://{address}/health"
    elif config.engine == "prometheus":
        config_file = config.data_dir / "prometheus.yml"
        config_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # nothing to scrape: the platform writes into it (remote-write receiver)
        config_file.write_text("global: {}\n")
        argv = [
            _binary("prometheus"),
            f"--config.file={config_file}",
            f"--web.listen-address={address}",
            f"--storage.tsdb.path={config.data_dir / 'tsdb'}",
            f"--storage.tsdb.retention.time={config.retention}",
            "--web.enable-remote-write-receiver",
            "--log.level=warn",
        ]
        ready = f"http://{address}/-/ready"
    else:
        raise ValueError(f"no embedded engine {config.engine!r}")
    return SupervisedProcess(config.engine, argv, ready, config.data_dir.parent / f"{config.engine}.log")


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise Unavailable(f"{name} is not installed (scripts/setup.sh installs it from Debian)")
    return path


def embedded_store(engine: str, port: int) -> MetricsStore:
    """The store of an embedded engine listening on 127.0.0.1:``port``."""
    base = f"http://127.0.0.1:{port}"
    return MetricsStore(engine, base, base + WRITE_PATHS[engine])
