"""``novacron-server``: an all-in-one node (API, controllers, embedded agent) in one process."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import uvicorn

from novacron.config import Settings
from novacron.context import Context
from novacron.db.base import Database
from novacron.identity.encryption import encryption_for
from novacron.identity.pki import ensure_server_tls
from novacron.private import set_private_umask


def build_context(settings: Settings) -> Context:
    from novacron.agent.control import LocalControlPlane
    from novacron.agent.runtime import AgentRuntime
    from novacron.backup.dr import DRDrill
    from novacron.backup.failover import HANDLERS as DR_HANDLERS
    from novacron.backup.tasks import HANDLERS as BACKUP_HANDLERS
    from novacron.compute.ha import HARestartVM
    from novacron.compute.images import ImportImage
    from novacron.compute.migration import ColdMigrateVM, MigrateVM
    from novacron.compute.tasks import HANDLERS
    from novacron.db.migrate import upgrade
    from novacron.identity.sealing import check_openable, seal_clear_rows
    from novacron.identity.tokens import TokenService
    from novacron.network import make_backend
    from novacron.tasks.runner import TaskRunner
    from novacron.virt import make_driver

    settings.ensure_dirs()
    db = Database(settings.database_url)
    enc = encryption_for(settings)
    upgrade(db, encryption=enc)
    _make_private(settings, db)
    seal_clear_rows(db, enc)
    check_openable(db, enc)
    ctx = Context(settings=settings, db=db, tokens=TokenService(db, settings))
    ctx.tasks = TaskRunner(
        ctx,
        [
            *HANDLERS,
            ImportImage(),
            MigrateVM(),
            ColdMigrateVM(),
            HARestartVM(),
            *BACKUP_HANDLERS,
            DRDrill(),
            *DR_HANDLERS,
        ],
    )
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


def ensure_defaults(ctx: Context) -> str | None:
    """First start: admin user, default tenant/project, starter flavors. Returns a new admin password."""
    from novacron.compute.defaults import ensure_flavors
    from novacron.identity.bootstrap import ensure_bootstrap

    password = ensure_bootstrap(ctx.db, ctx.settings.state_dir)
    ensure_flavors(ctx.db)
    return password


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default 8080)")
    args = parser.parse_args()
    set_private_umask()  # everything the node and its children (QEMU) create: 0600/0700
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = Settings.from_env()
    ctx = build_context(settings)
    password = ensure_defaults(ctx)
    host = args.host or settings.listen_host
    port = args.port or settings.listen_port
    url = f"http://{host}:{port}"
    print(f"NovaCron {url}  (API docs: {url}/docs)", flush=True)
    if password:
        print(
            f"First start: user 'admin', password '{password}' (also in {settings.state_dir}/admin-password)",
            flush=True,
        )
    from novacron.api.app import create_app

    app = create_app(ctx)
    servers = [
        uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", ws="websockets-sansio"))
    ]
    if settings.agent_port:
        tls = ensure_server_tls(
            ctx.db,
            settings.state_dir,
            sorted({host, "127.0.0.1", "localhost", settings.host_name}),
            encryption_for(settings),
        )
        # where agents dial this replica back (console relays): a wildcard listener is named by host
        advertised = settings.host_name if host in ("0.0.0.0", "::", "") else host
        ctx.extras.update(
            tls=tls,
            ca_fingerprint=tls.ca_fingerprint(),
            agent_url=f"https://{host}:{settings.agent_port}",
            relay_url=f"https://{advertised}:{settings.agent_port}",
        )
        print(f"Agents join at https://{host}:{settings.agent_port} (CA {tls.ca_fingerprint()})", flush=True)
        # the same app on HTTPS for node agents; the plain listener runs the background workers
        servers.append(
            uvicorn.Server(
                uvicorn.Config(
                    app,
                    host=host,
                    port=settings.agent_port,
                    log_level="warning",
                    lifespan="off",
                    ssl_certfile=str(tls.cert),
                    ssl_keyfile=str(tls.key),
                    ws="websockets-sansio",
                )
            )
        )
    asyncio.run(_serve(servers))


async def _serve(servers: list[uvicorn.Server]) -> None:
    await asyncio.gather(*(server.serve() for server in servers))


if __name__ == "__main__":
    main()
