"""What every command module shares: the per-invocation state holding the API client, common options."""

from __future__ import annotations

from dataclasses import dataclass, field

import typer

from novacron.cli.client import Client, resolve


@dataclass
class State:
    server: str | None = None
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.server)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def state_of(ctx: typer.Context) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):  # a sub-app invoked on its own, e.g. in tests
        root.obj = State()
    return root.obj


def client_of(ctx: typer.Context) -> Client:
    return state_of(ctx).client()


def resolve_vm(ctx: typer.Context, ref: str) -> dict[str, object]:
    return resolve(client_of(ctx), "vms", ref, "vm")


JSON = typer.Option(False, "--json", help="print the API's JSON instead of a table")
LIMIT = typer.Option(None, "--limit", min=1, max=500, help="one page of at most this many (default: all)")
CURSOR = typer.Option(None, "--cursor", help="continue a listing from this cursor (with --limit)")
