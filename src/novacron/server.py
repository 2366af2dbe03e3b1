"""``novacron-server``: an all-in-one node (API, controllers, embedded agent) in one process.

The API and dashboard listen on HTTPS (a certificate of the platform CA, or the operator's own);
plain HTTP only when asked for (``NOVACRON_PLAIN_HTTP=1``) on a loopback address. Node agents
reach the same app on the agent port, always under the platform CA they pin.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.types import ASGIApp

from novacron.api.transport import SecurityHeaders
from novacron.config import Settings, is_loopback
from novacron.context import AgentListener, Context
from novacron.db.base import Database
from novacron.errors import Unavailable
from novacron.gslb.sync import DnsSync
from novacron.identity.encryption import encryption_for
from novacron.identity.pki import ServerTLS, ensure_server_tls
from novacron.monitoring import logs, tracing
from novacron.monitoring.alerting.cluster import ClusterSpec
from novacron.monitoring.alerting.engines import AlertingStack, start_alerting
from novacron.monitoring.process import EngineFailed
from novacron.private import set_private_umask

if TYPE_CHECKING:
    from novacron.tasks.runner import TaskHandler


def _task_handlers() -> list[TaskHandler]:
    """Every kind of durable task the server runs, by area."""
    from novacron.autoscaling.refresh import HANDLERS as REFRESH_HANDLERS
    from novacron.autoscaling.tasks import HANDLERS as SCALING_HANDLERS
    from novacron.backup.dr import DRDrill
    from novacron.backup.failover import HANDLERS as DR_HANDLERS
    from novacron.backup.tasks import HANDLERS as BACKUP_HANDLERS
    from novacron.backup.volbackup import HANDLERS as VOLUME_BACKUP_HANDLERS
    from novacron.compliance.export_task import HANDLERS as EXPORT_HANDLERS
    from novacron.compute.clones import CloneVM
    from novacron.compute.ha import HARestartVM
    from novacron.compute.images import ImportImage
    from novacron.compute.live_resize import HANDLERS as RESIZE_HANDLERS
    from novacron.compute.migration import ColdMigrateVM, MigrateVM
    from novacron.compute.tasks import HANDLERS
    from novacron.compute.templates import TemplateVM
    from novacron.compute.vm_snapshot_tasks import HANDLERS as VM_SNAPSHOT_HANDLERS
    from novacron.compute.volume_snapshots import HANDLERS as VOLUME_SNAPSHOT_HANDLERS
    from novacron.compute.volume_tasks import HANDLERS as VOLUME_HANDLERS
    from novacron.lbaas.acme_service import IssueCertificate
    from novacron.lbaas.failover import HANDLERS as LB_FAILOVER_HANDLERS
    from novacron.lbaas.tasks import HANDLERS as LB_HANDLERS

    return [
        *HANDLERS,
        *VOLUME_HANDLERS,
        *VOLUME_BACKUP_HANDLERS,
        *EXPORT_HANDLERS,
        *VOLUME_SNAPSHOT_HANDLERS,
        *VM_SNAPSHOT_HANDLERS,
        *RESIZE_HANDLERS,
        ImportImage(),
        MigrateVM(),
        ColdMigrateVM(),
        HARestartVM(),
        CloneVM(),
        TemplateVM(),
        *BACKUP_HANDLERS,
        DRDrill(),
        *DR_HANDLERS,
        IssueCertificate(),
        *LB_HANDLERS,
        *LB_FAILOVER_HANDLERS,
        *SCALING_HANDLERS,
        *REFRESH_HANDLERS,
    ]


def build_context(settings: Settings) -> Context:
    from novacron.agent.control import LocalControlPlane
    from novacron.agent.hoststats import HostSampler
    from novacron.agent.runtime import AgentRuntime
    from novacron.db.migrate import upgrade
    from novacron.identity import kms_backup
    from novacron.identity.sealing import check_openable, seal_clear_rows
    from novacron.identity.tokens import TokenService
    from novacron.lbaas.challenges import AgentResponders
    from novacron.monitoring.stack import MonitoringStack
    from novacron.monitoring.tracestore import start_node_tracing
    from novacron.network import make_backend
    from novacron.tasks.runner import TaskRunner
    from novacron.virt import make_driver

    settings.ensure_dirs()
    db = Database(settings.database_url)
    kms_backup.register(db)  # the backup code reaches the tenants' keys through this one
    enc = encryption_for(settings)
    upgrade(db, encryption=enc)
    _make_private(settings, db)
    seal_clear_rows(db, enc)
    check_openable(db, enc)
    ctx = Context(settings=settings, db=db, tokens=TokenService(db, settings))
    ctx.monitoring = MonitoringStack.for_node(settings, db, lambda: ctx.settings.anomaly_detection)
    ctx.acme_responders = AgentResponders(ctx)
    ctx.trace_store = start_node_tracing(settings, db)
    ctx.tasks = TaskRunner(ctx, _task_handlers(), concurrency=ctx.settings.task_concurrency)
    if settings.embedded_agent:
        driver = make_driver(settings.compute_driver, settings)
        control = LocalControlPlane(ctx, settings.host_name, driver.name)
        ctx.agent = AgentRuntime(
            driver,
            control,
            settings.metrics_interval_s,
            settings.migration_address,
            settings.run_dir,
            underlay_ip=settings.underlay_ip,
            network=make_backend(settings, scope=settings.host_name),
        )
        ctx.agent.host_sampler = HostSampler(settings.state_dir, settings.run_dir)
    return ctx


def _make_private(settings: Settings, db: Database) -> None:
    """The state dir private (an older install's tree is tightened once), the database files too."""
    from sqlalchemy import select

    from novacron.db.models import BackupTarget
    from novacron.private import harden_once, private_tree

    with db.read_session() as s:
        local = [Path(str(c.get("path"))) for c in s.scalars(select(BackupTarget.config).where(
            BackupTarget.type == "local")) if c.get("path")]  # fmt: skip
    shared = [p for p in (settings.shared_images_dir, settings.shared_storage_dir) if p is not None]
    harden_once(settings.state_dir, [*shared, *local])
    if db.url.startswith("sqlite:///"):
        # the database and its -wal/-shm, whatever umask made them (SQLite copies the file's mode)
        path = Path(db.url.removeprefix("sqlite:///"))
        for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if f.exists():
                private_tree(f)


def _context_or_exit(settings: Settings) -> Context:
    """The context, or exit 2 with one clear line when the stored secrets cannot be opened."""
    from novacron.identity.kek import KEKUnavailable
    from novacron.identity.sealing import KEKMismatch

    try:
        return build_context(settings)
    except (KEKUnavailable, KEKMismatch) as exc:
        logging.getLogger("novacron.server").critical("cannot start: %s", exc)
        raise SystemExit(2) from None


def ensure_defaults(ctx: Context) -> str | None:
    """First start: admin user, default tenant/project, starter flavors, the metrics scrape token.
    Returns a new admin password."""
    from novacron.compute.defaults import ensure_flavors
    from novacron.identity.bootstrap import ensure_bootstrap
    from novacron.monitoring.scrape_token import ensure_scrape_token
    from novacron.quota.defaults import ensure_tenant_defaults

    password = ensure_bootstrap(ctx.db, ctx.settings.state_dir)
    ensure_scrape_token(ctx.settings.state_dir)
    ensure_flavors(ctx.db)
    ensure_tenant_defaults(ctx.db, ctx.settings.tenant_quota_defaults)
    return password


WILDCARD = ("0.0.0.0", "::", "")


def url_of(scheme: str, host: str, port: int) -> str:
    """``scheme://host:port`` with an IPv6 address in brackets (RFC 3986)."""
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def refuse_plain_http_off_loopback(settings: Settings, host: str) -> None:
    """Plain HTTP only where nobody but this host can listen in: exits naming the setting."""
    if settings.plain_http and not is_loopback(host):
        raise SystemExit(
            f"NOVACRON_PLAIN_HTTP=1 is allowed only on a loopback listen address, and "
            f"NOVACRON_LISTEN_HOST is {host!r}: unset NOVACRON_PLAIN_HTTP to serve HTTPS (a certificate "
            "of the platform CA, or your own with NOVACRON_TLS_CERT and NOVACRON_TLS_KEY), or listen "
            "on 127.0.0.1 behind a TLS-terminating proxy."
        )


def api_certificate(settings: Settings, platform: ServerTLS) -> tuple[Path, Path] | None:
    """The API listener's (certificate, key): the operator's, else the platform CA's; None for
    plain HTTP. Exits naming the settings when the operator's files do not load."""
    if settings.plain_http:
        return None
    if settings.tls_cert is None and settings.tls_key is None:
        return platform.cert, platform.key
    if settings.tls_cert is None or settings.tls_key is None:
        raise SystemExit("NOVACRON_TLS_CERT and NOVACRON_TLS_KEY go together: set both, or neither.")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
            settings.tls_cert, settings.tls_key
        )
    except (OSError, ssl.SSLError) as exc:
        raise SystemExit(
            f"NOVACRON_TLS_CERT={settings.tls_cert} / NOVACRON_TLS_KEY={settings.tls_key}: "
            f"cannot load the certificate and its key: {exc}"
        ) from exc
    return settings.tls_cert, settings.tls_key


#: how long a stopping node waits for open requests (streams included) before it closes them
SHUTDOWN_GRACE_S = 10


def _listener(app: ASGIApp, host: str, port: int, tls: tuple[Path, Path] | None, **kw: Any) -> uvicorn.Server:
    if tls is not None:
        # HSTS on TLS listeners only: never on plain HTTP
        app = SecurityHeaders(app, hsts=True)
        kw.update(ssl_certfile=str(tls[0]), ssl_keyfile=str(tls[1]))
    # proxy_headers=False: uvicorn would believe X-Forwarded-For from 127.0.0.1 by default and
    # rewrite the client address; the app does that itself, from NOVACRON_TRUSTED_PROXIES only
    # (identity/clientaddr.py)
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            ws="websockets-sansio",
            proxy_headers=False,
            # event streams and live charts never end by themselves: a stopping node gives requests
            # this long, then closes what is still open (the dashboard reconnects to another replica)
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
            **kw,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 8080)")
    args = parser.parse_args()
    set_private_umask()  # everything the node and its children (QEMU) create: 0600/0700
    logs.configure(tracing.API)  # JSON lines with the trace_id of the span they were written in
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request's whole URL at INFO: an import URL's password, a webhook's token
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = Settings.from_env()
    host = args.host or settings.listen_host
    port = args.port or settings.listen_port
    refuse_plain_http_off_loopback(settings, host)  # before any state is made
    ctx = _context_or_exit(settings)
    password = ensure_defaults(ctx)
    names = {host, "127.0.0.1", "localhost", settings.host_name, *settings.tls_names}
    tls = ensure_server_tls(ctx.db, settings.state_dir, sorted(names), encryption_for(settings))
    api_tls = api_certificate(settings, tls)
    url = url_of("https" if api_tls else "http", host, port)
    print(f"NovaCron {url}  (API docs: {url}/docs)", flush=True)
    if api_tls == (tls.cert, tls.key):
        print(f"TLS: a certificate of the platform CA; clients trust {tls.ca_cert}", flush=True)
    if password:
        print(
            f"First start: user 'admin', password '{password}' (also in {settings.state_dir}/admin-password)",
            flush=True,
        )
    from novacron.api.app import create_app

    app = create_app(ctx)
    servers = [_listener(app, host, port, api_tls)]
    if settings.agent_port:
        # where agents dial this replica back (console relays): a wildcard listener is named by host
        advertised = settings.host_name if host in WILDCARD else host
        ctx.agent_listener = AgentListener(
            tls=tls,
            ca_fingerprint=tls.ca_fingerprint(),
            url=url_of("https", host, settings.agent_port),
            relay_url=url_of("https", advertised, settings.agent_port),
        )
        print(f"Agents join at {ctx.agent_listener.url} (CA {ctx.agent_listener.ca_fingerprint})", flush=True)
        # the same app for node agents, always with the platform CA's certificate (agents pin the
        # CA); the API listener runs the background workers
        servers.append(_listener(app, host, settings.agent_port, (tls.cert, tls.key), lifespan="off"))
    assert ctx.monitoring is not None
    ctx.monitoring.start()  # the metrics store answers before the agent's first report
    alerting = _start_alerting(ctx, tls)
    dns = _start_gslb(ctx)
    try:
        asyncio.run(_serve(servers))
    finally:
        if dns is not None:
            dns.stop()
        if alerting is not None:
            alerting.stop()
        ctx.monitoring.stop()
        tracing.shutdown()  # the spans still queued reach the store


def _start_alerting(ctx: Context, tls: ServerTLS) -> AlertingStack | None:
    """vmalert + Alertmanager on the metrics store (stopped before it), the Alertmanager clustered
    with the other replicas' when the node says where it gossips; a node without the engines
    installed runs without alerts (the alert APIs say so) rather than not at all."""
    address = ctx.settings.alerting_cluster_address
    spec = ClusterSpec(address, ctx.settings.host_name, tls) if address else None
    try:
        return start_alerting(ctx, cluster_spec=spec)
    except EngineFailed as exc:
        logging.getLogger(__name__).warning("alerting is off: %s", exc)
        return None


def _start_gslb(ctx: Context) -> DnsSync | None:
    """This node's PowerDNS serving the global names, kept in step with the tables, when the
    platform has a GSLB zone; a node that cannot start it runs without (the names are kept, and
    served once it starts)."""
    if not ctx.settings.gslb_zone:
        return None
    try:
        return DnsSync(ctx.db, ctx.settings).start()
    except Unavailable as exc:
        logging.getLogger(__name__).warning("global load balancing DNS is off: %s", exc)
        return None


async def _serve(servers: list[uvicorn.Server]) -> None:
    await asyncio.gather(*(server.serve() for server in servers))


if __name__ == "__main__":
    main()
