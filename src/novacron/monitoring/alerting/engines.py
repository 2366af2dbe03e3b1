"""The alerting engines beside the node: vmalert evaluates the rules against the metrics store,
Alertmanager groups, silences, inhibits and repeats, and the platform's notification listener
(loopback, bearer secret made at each start) delivers what Alertmanager hands it.

Both engines run supervised (``monitoring/process.py``) on loopback ports, their files private
under ``<state_dir>/alerting``. Their configuration is rendered from the database by a reconciler
thread: once a second (and at once when a service asks), the rules and receivers are read and
rendered; when the text changed it is written and the engine told to reload. Every replica renders
from the same rows, so the database stays the one source of truth.

``start_alerting(ctx)`` is the one call a node makes to run all of it (``ctx.alerting``).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from secrets import token_urlsafe
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import or_, select

from novacron.db.models import AlertReceiver, AlertRule
from novacron.monitoring.alerting import notify
from novacron.monitoring.alerting.amconfig import RoutedReceiver, render_config
from novacron.monitoring.alerting.cluster import (
    REFRESH_S,
    ClusterSpec,
    alertmanager_flags,
    live_peers,
    register,
    tls_config,
    unregister,
)
from novacron.monitoring.alerting.rules import ENFORCING, RenderedRule, render_rule_file
from novacron.monitoring.process import SupervisedProcess, free_loopback_port
from novacron.private import mkdir_private, write_private

if TYPE_CHECKING:
    from novacron.config import Settings
    from novacron.context import Context
    from novacron.db.base import Database

log = logging.getLogger(__name__)

VMALERT = "/usr/bin/vmalert"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
AMTOOL = "/usr/bin/amtool"
#: how often vmalert evaluates, and how often the reconciler looks for changed rows
EVALUATION_INTERVAL_S = 1.0
ENGINE_TIMEOUT_S = 5.0


class _Listener(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, bearer: str, handle: Callable[[str, dict[str, Any]], None]) -> None:
        super().__init__(("127.0.0.1", 0), _NotifyHandler)
        self.bearer = bearer
        self.handle = handle


class _NotifyHandler(BaseHTTPRequestHandler):
    server: _Listener

    def do_POST(self) -> None:
        given = self.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.server.bearer}".encode()):
            self._answer(401)
            return
        name = self.path.removeprefix("/notify/")
        try:
            payload = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.server.handle(name, payload)
        except Exception:  # Alertmanager retries on 5xx; the cause goes to the log
            log.warning("alerting: notification for %s not delivered", name, exc_info=True)
            self._answer(500)
            return
        self._answer(200)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _rendered_rules(db: Database, engine: str) -> list[RenderedRule]:
    """The enabled rules as vmalert evaluates them against a store of ``engine``."""
    stmt = select(AlertRule).where(AlertRule.enabled.is_(True))
    if engine != ENFORCING:
        # a tenant's burn_rate expression is scoped by extra_label alone, which this store ignores:
        # left out, whatever store the node ran when the rule was made
        stmt = stmt.where(or_(AlertRule.tenant_id.is_(None), AlertRule.kind != "burn_rate"))
    with db.read_session() as s:
        return [
            RenderedRule(
                r.id,
                r.tenant_id,
                r.name,
                r.expr,
                r.for_s,
                r.severity,
                dict(r.labels),
                dict(r.annotations),
                list(r.receiver_ids),
            )
            for r in s.scalars(stmt)
        ]


def _routed_receivers(db: Database) -> list[RoutedReceiver]:
    with db.read_session() as s:
        return [
            RoutedReceiver(
                r.id,
                r.tenant_id,
                list(r.group_by),
                r.group_wait_s,
                r.group_interval_s,
                r.repeat_interval_s,
                list(r.matchers),
            )
            for r in s.scalars(select(AlertReceiver))
        ]


def _write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_suffix(".tmp")
    write_private(tmp, text)
    os.replace(tmp, path)
    return True


class AlertingStack:
    """vmalert + Alertmanager + the notification listener, kept in step with the database."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        query_url: str,
        *,
        engine: str = "victoriametrics",
        cluster: ClusterSpec | None = None,
    ) -> None:
        self.settings = settings
        #: this replica's place in the Alertmanager cluster (None: a lone Alertmanager)
        self.cluster = cluster
        #: the store's engine: only VictoriaMetrics enforces ``extra_label`` on a whole expression
        self.engine = engine
        self.db = db
        self.query_url = query_url.rstrip("/")
        self.dir = settings.state_dir / "alerting"
        self.rules_path = self.dir / "rules.yml"
        self.config_path = self.dir / "alertmanager.yml"
        self._bearer = token_urlsafe(32)
        self._listener = _Listener(self._bearer, self._deliver)
        self.listener_url = f"http://127.0.0.1:{self._listener.server_address[1]}"
        am_port, vmalert_port = free_loopback_port(), free_loopback_port()
        self.alertmanager_url = f"http://127.0.0.1:{am_port}"
        self.vmalert_url = f"http://127.0.0.1:{vmalert_port}"
        self.alertmanager = SupervisedProcess(
            "alertmanager",
            [
                ALERTMANAGER,
                f"--config.file={self.config_path}",
                f"--storage.path={self.dir / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{am_port}",
                *self._cluster_flags(),
                "--log.level=warn",
            ],
            f"{self.alertmanager_url}/-/ready",
            self.dir / "alertmanager.log",
        )
        self.vmalert = SupervisedProcess(
            "vmalert",
            [
                VMALERT,
                f"-rule={self.rules_path}",
                f"-datasource.url={self.query_url}",
                f"-notifier.url={self.alertmanager_url}",
                f"-evaluationInterval={EVALUATION_INTERVAL_S:g}s",
                f"-httpListenAddr=127.0.0.1:{vmalert_port}",
                "-loggerLevel=WARN",
            ],
            f"{self.vmalert_url}/health",
            self.dir / "vmalert.log",
        )
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        #: the reload URLs of engines whose file changed but that have not reloaded it yet
        self._unapplied: set[str] = set()

    def _cluster_flags(self) -> list[str]:
        if self.cluster is None:
            return ["--cluster.listen-address="]
        peers = live_peers(self.db, self.cluster.address)
        return alertmanager_flags(self.cluster, peers, self.dir / "cluster-tls.yml")

    def start(self) -> None:
        """Render the configuration, start the listener and both engines, then keep them in step."""
        mkdir_private(self.dir)
        mkdir_private(self.dir / "alertmanager")
        if self.cluster is not None:
            write_private(self.dir / "cluster-tls.yml", tls_config(self.cluster.tls))
            register(self.db, self.cluster)
        self.sync(reload=False)  # the files the engines start with
        self._unapplied.clear()
        self._spawn(self._listener.serve_forever, "alert-listener")
        try:
            self.alertmanager.start()
            self.vmalert.start()
        except BaseException:
            self.stop()
            raise
        self._spawn(self._reconcile, "alert-sync")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self) -> None:
        """Stop the reconciler, the engines and the listener."""
        self._stopping.set()
        self._wake.set()
        self.vmalert.stop()
        self.alertmanager.stop()
        if self.cluster is not None:
            unregister(self.db, self.cluster.address)
        if self._threads:  # the listener serves (shutdown() would wait forever otherwise)
            self._listener.shutdown()
        self._listener.server_close()
        for thread in self._threads:
            thread.join(5)

    def wake(self) -> None:
        """Re-render soon (a rule or receiver changed; the reconciler also looks every second)."""
        self._wake.set()

    def sync(self, *, reload: bool = True) -> bool:
        """Render from the database, write what changed and reload the engines whose files changed
        (a reload that failed is tried again at the next round). True if any file changed."""
        rules = render_rule_file(_rendered_rules(self.db, self.engine), EVALUATION_INTERVAL_S)
        config = render_config(_routed_receivers(self.db), self.listener_url, self._bearer)
        changed = False
        for path, text, reload_url in (
            (self.rules_path, rules, f"{self.vmalert_url}/-/reload"),
            (self.config_path, config, f"{self.alertmanager_url}/-/reload"),
        ):
            if _write_if_changed(path, text):
                self._unapplied.add(reload_url)
                changed = True
        for reload_url in sorted(self._unapplied) if reload else ():
            httpx.post(reload_url, timeout=ENGINE_TIMEOUT_S).raise_for_status()
            self._unapplied.discard(reload_url)
        return changed

    def _reconcile(self) -> None:
        registered = time.monotonic()
        while not self._stopping.is_set():
            self._wake.wait(EVALUATION_INTERVAL_S)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                if self.cluster is not None and time.monotonic() - registered >= REFRESH_S:
                    register(self.db, self.cluster)
                    registered = time.monotonic()
                self.sync()
            except Exception:  # the engine may be restarting; the next round renders again
                log.warning("alerting: could not apply the rules and receivers", exc_info=True)

    def _deliver(self, receiver: str, payload: dict[str, Any]) -> None:
        notify.deliver(self.db, self.settings, receiver, payload)

    # -- the engines' APIs, for the services ------------------------------------------------------

    def active_alerts(self) -> list[dict[str, Any]]:
        """vmalert's pending and firing alerts (its ``/api/v1/alerts``)."""
        r = httpx.get(f"{self.vmalert_url}/api/v1/alerts", timeout=ENGINE_TIMEOUT_S)
        r.raise_for_status()
        alerts: list[dict[str, Any]] = r.json().get("data", {}).get("alerts") or []
        return alerts

    def silences(self) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.alertmanager_url}/api/v2/silences", timeout=ENGINE_TIMEOUT_S)
        r.raise_for_status()
        silences: list[dict[str, Any]] = r.json()
        return silences

    def create_silence(self, silence: dict[str, Any]) -> str:
        r = httpx.post(f"{self.alertmanager_url}/api/v2/silences", json=silence, timeout=ENGINE_TIMEOUT_S)
        r.raise_for_status()
        return str(r.json()["silenceID"])

    def expire_silence(self, silence_id: str) -> None:
        r = httpx.delete(f"{self.alertmanager_url}/api/v2/silence/{silence_id}", timeout=ENGINE_TIMEOUT_S)
        r.raise_for_status()


def start_alerting(
    ctx: Context,
    query_url: str | None = None,
    engine: str | None = None,
    cluster_spec: ClusterSpec | None = None,
) -> AlertingStack:
    """Start alerting beside the node against its metrics store (``ctx.metrics_store``: its
    ``query_url`` and ``engine``, unless given) and make it ``ctx.alerting``; stop it with
    ``ctx.alerting.stop()`` before the store stops. With ``cluster_spec`` its Alertmanager joins
    the other replicas' (``cluster.py``)."""
    store = getattr(ctx, "metrics_store", None)
    if query_url is None:
        if store is None:
            raise RuntimeError("alerting needs the node's metrics store (ctx.metrics_store)")
        query_url = str(store.query_url)
    if engine is None:
        engine = str(getattr(store, "engine", "victoriametrics"))
    stack = AlertingStack(ctx.settings, ctx.db, query_url, engine=engine, cluster=cluster_spec)
    stack.start()
    ctx.alerting = stack
    return stack
