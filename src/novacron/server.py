"""``novacron-server``: an all-in-one node (API, controllers, embedded agent) in one process."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from novacron.config import Settings
from novacron.context import Context
from novacron.db.base import Database


def build_context(settings: Settings) -> Context:
    from novacron.agent.agent import NodeAgent
    from novacron.compute.images import ImportImage
    from novacron.compute.tasks import HANDLERS
    from novacron.db.migrate import upgrade
    from novacron.identity.tokens import TokenService
    from novacron.tasks.runner import TaskRunner
    from novacron.virt import make_driver

    settings.ensure_dirs()
    db = Database(settings.database_url)
    upgrade(db)
    ctx = Context(settings=settings, db=db, tokens=TokenService(db, settings))
    ctx.tasks = TaskRunner(ctx, [*HANDLERS, ImportImage()])
    if settings.embedded_agent:
        ctx.agent = NodeAgent(ctx, make_driver(settings.compute_driver, settings), settings.host_name)
    return ctx


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

    uvicorn.run(create_app(ctx), host=host, port=port, log_level="warning", ws="websockets-sansio")


if __name__ == "__main__":
    main()
