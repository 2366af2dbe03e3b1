"""What every command module shares: the per-invocation state holding the API client, common options."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import typer

from novacron.cli.client import ApiError, Client, CliError, resolve
from novacron.cli.output import info

DEFAULT_PROJECT = "default"


@dataclass
class State:
    server: str | None = None
    ca_file: str | None = None
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.server, ca_file=self.ca_file)
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


JSON = typer.Option(False, "--json", help="print the API's JSON (the same as -f json)")
LIMIT = typer.Option(None, "--limit", min=1, max=500, help="one page of at most this many (default: all)")
CURSOR = typer.Option(None, "--cursor", help="continue a listing from this cursor (with --limit)")


def project_id(client: Client, ref: str) -> str:
    """A project id from an id or a name, as the server resolves it."""
    return str(resolve(client, "projects", ref, "project")["id"])


def _needs_project(exc: ApiError) -> bool:
    return exc.status == 422 and any(
        isinstance(e, dict)
        and e.get("field") == "body.project_id"
        and "administrator" in str(e.get("reason"))
        for e in exc.problem.get("errors") or []
    )


def key_values(items: list[str], option: str) -> dict[str, str]:
    """The KEY=VALUE items of a repeatable option, as a dict."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{option} expects KEY=VALUE, got '{item}'")
        out[key] = value
    return out


def post_idempotent(client: Client, path: str, body: dict[str, Any]) -> Any:
    """POST with a fresh ``Idempotency-Key``: a replay of this request answers what it made."""
    return client.send("POST", path, json_body=body, headers={"Idempotency-Key": str(uuid.uuid4())}).json()


def create_in_project(
    client: Client, path: str, body: dict[str, Any], project: str | None, *, idempotent: bool = False
) -> Any:
    """POST a new resource. A platform administrator (no tenant of their own) who names no project gets
    the bootstrap project ``default``, with a note, instead of an error. ``idempotent``: each POST
    carries an ``Idempotency-Key`` (a replay answers the resource it made)."""

    def post(sent: dict[str, Any]) -> Any:
        return post_idempotent(client, path, sent) if idempotent else client.post(path, sent)

    if project:
        return post({**body, "project_id": project_id(client, project)})
    try:
        return post(body)
    except ApiError as exc:
        if not _needs_project(exc):
            raise
        items = client.get("/v1/projects", name=DEFAULT_PROJECT, limit=2).get("items", [])
        if len(items) != 1:
            exc.hint = "Name the project with --project NAME|ID."
            raise
        info(
            f"[dim]Platform administrator without a tenant: using project '{DEFAULT_PROJECT}' "
            f"({items[0]['id']}); choose another with --project.[/]"
        )
        return post({**body, "project_id": items[0]["id"]})


# the machine a VM of this flavor or image runs as (compute/hardware.py); unset: the API's defaults
MACHINE = typer.Option(None, "--machine", help="pc or q35")
FIRMWARE = typer.Option(None, "--firmware", help="bios or uefi (OVMF, with each VM's own NVRAM)")
SECURE_BOOT = typer.Option(None, "--secure-boot/--no-secure-boot", help="UEFI Secure Boot (uefi on q35)")
TPM = typer.Option(None, "--tpm/--no-tpm", help="a virtual TPM 2.0 per VM")


def hardware_body(
    machine: str | None, firmware: str | None, secure_boot: bool | None, tpm: bool | None
) -> dict[str, Any]:
    """The ``hardware`` settings given on the command line (the API checks them, by field)."""
    given = {"machine": machine, "firmware": firmware, "secure_boot": secure_boot, "tpm": tpm}
    return {key: value for key, value in given.items() if value is not None}
