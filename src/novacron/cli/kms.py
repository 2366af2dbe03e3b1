"""``novacron kms ...``: the tenant's keys (create, rotate, disable, delete, shred), encrypt and
decrypt with them, data keys, re-wrap; and ``novacron kms secret ...``: the tenant's secrets.

Plaintexts and secret values are read from standard input (or a file), never from the command
line, where other users of the machine and the shell's history would see them.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import typer

from novacron.cli.client import CliError
from novacron.cli.common import JSON, client_of
from novacron.cli.output import Column, human_time, out, print_detail, print_json, print_list

app = typer.Typer(no_args_is_help=True)
secret_app = typer.Typer(no_args_is_help=True)
app.add_typer(
    secret_app, name="secret", help="The tenant's secrets: write-only, written into VMs by cloud-init."
)

COLUMNS: list[Column] = [
    ("ID", "id"),
    ("NAME", "name"),
    ("ALGORITHM", "algorithm"),
    ("STATE", "state"),
    ("VERSION", "primary_version"),
    ("PURPOSE", "purpose"),
    ("ROTATED", lambda k: human_time(k["rotated_at"]) if k["rotated_at"] else "never"),
]
SECRET_COLUMNS: list[Column] = [("ID", "id"), ("NAME", "name"), ("PATH", "path"), ("KEY", "key_id")]
AAD = typer.Option("", "--aad", help="associated data (text): the same must be given to decrypt")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _input(path: Path | None) -> bytes:
    if path is not None:
        try:
            return path.read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {path}: {exc}") from exc
    return sys.stdin.buffer.read()


def _key_done(key: dict[str, Any], as_json: bool, what: str) -> None:
    if as_json:
        print_json(key)
    else:
        out.print(f"key {key['name']} ({key['id']}) {what}: {key['state']}, version {key['primary_version']}")


@app.command("create")
def create(
    ctx: typer.Context,
    name: str,
    algorithm: str = typer.Option("aes-256-gcm", "--algorithm", help="aes-256-gcm or chacha20-poly1305"),
    description: str = typer.Option("", "--description"),
    tenant: str | None = typer.Option(None, "--tenant", help="platform admins: the tenant it is for"),
    as_json: bool = JSON,
) -> None:
    """A new key of your tenant."""
    body = {"name": name, "algorithm": algorithm, "description": description, "tenant": tenant}
    _key_done(client_of(ctx).post("/v1/kms/keys", body), as_json, "created")


@app.command("list")
def list_keys(ctx: typer.Context, as_json: bool = JSON) -> None:
    """The keys of your tenant (the backup key wraps your backups' key)."""
    print_list(client_of(ctx).get("/v1/kms/keys"), COLUMNS, as_json=as_json, empty="No keys.")


@app.command("show")
def show(ctx: typer.Context, key: str, as_json: bool = JSON) -> None:
    """One key: its algorithm, state, primary version, dates."""
    print_detail(client_of(ctx).get(f"/v1/kms/keys/{key}"), as_json=as_json)


def _action(ctx: typer.Context, key: str, action: str, body: Any = None) -> dict[str, Any]:
    result: dict[str, Any] = client_of(ctx).post(f"/v1/kms/keys/{key}/{action}", body)
    return result


@app.command("rotate")
def rotate(ctx: typer.Context, key: str, as_json: bool = JSON) -> None:
    """A new primary version; older ciphertexts still decrypt (asks for step-up when you have MFA)."""
    _key_done(_action(ctx, key, "rotate"), as_json, "rotated")


@app.command("disable")
def disable(ctx: typer.Context, key: str, as_json: bool = JSON) -> None:
    """Refuse every use of the key until it is enabled again."""
    _key_done(_action(ctx, key, "disable"), as_json, "disabled")


@app.command("enable")
def enable(ctx: typer.Context, key: str, as_json: bool = JSON) -> None:
    _key_done(_action(ctx, key, "enable"), as_json, "enabled")


@app.command("schedule-deletion")
def schedule_deletion(
    ctx: typer.Context, key: str, days: int = typer.Option(7, "--days", help="1 to 30"), as_json: bool = JSON
) -> None:
    """Destroy the key after DAYS days (cancel-deletion stops it until then)."""
    result = _action(ctx, key, "schedule-deletion", {"days": days})
    _key_done(result, as_json, f"to be destroyed {human_time(result['deletion_at'])}")


@app.command("cancel-deletion")
def cancel_deletion(ctx: typer.Context, key: str, as_json: bool = JSON) -> None:
    """Keep a key pending deletion (it stays disabled until enabled)."""
    _key_done(_action(ctx, key, "cancel-deletion"), as_json, "deletion cancelled")


@app.command("shred")
def shred(
    ctx: typer.Context,
    key: str,
    yes: bool = typer.Option(False, "--yes", help="do not ask: everything it encrypted is lost"),
    as_json: bool = JSON,
) -> None:
    """Destroy the key now: what it encrypted (your backups, for the backup key) is unreadable for ever."""
    if not yes:
        typer.confirm(f"Destroy key {key}? Everything it encrypted becomes unreadable for ever", abort=True)
    _key_done(_action(ctx, key, "shred"), as_json, "destroyed")


@app.command("encrypt")
def encrypt(
    ctx: typer.Context,
    key: str,
    file: Path | None = typer.Option(None, "--file", help="the plaintext's file (default: standard input)"),
    aad: str = AAD,
) -> None:
    """Print the ciphertext (kms1:<key id>:<version>:...) of standard input or --file."""
    body = {"key": key, "plaintext": _b64(_input(file)), "aad": _b64(aad.encode())}
    print(client_of(ctx).post("/v1/kms/encrypt", body)["ciphertext"])


@app.command("decrypt")
def decrypt(ctx: typer.Context, ciphertext: str, aad: str = AAD) -> None:
    """Write the plaintext of CIPHERTEXT to standard output."""
    body = {"ciphertext": ciphertext, "aad": _b64(aad.encode())}
    sys.stdout.buffer.write(base64.b64decode(client_of(ctx).post("/v1/kms/decrypt", body)["plaintext"]))
    sys.stdout.flush()


@app.command("data-key")
def data_key(
    ctx: typer.Context, key: str, size: int = typer.Option(32, "--bytes", help="16 to 64"), aad: str = AAD
) -> None:
    """A new data key: its plaintext (base64) and its ciphertext under KEY, as JSON."""
    print_json(
        client_of(ctx).post("/v1/kms/data-keys", {"key": key, "bytes": size, "aad": _b64(aad.encode())})
    )


@app.command("rewrap")
def rewrap(ctx: typer.Context, ciphertext: str, aad: str = AAD) -> None:
    """Print CIPHERTEXT re-encrypted under its key's latest version (its plaintext stays in the service)."""
    body = {"ciphertext": ciphertext, "aad": _b64(aad.encode())}
    print(client_of(ctx).post("/v1/kms/rewrap", body)["ciphertext"])


@secret_app.command("set")
def secret_set(
    ctx: typer.Context,
    name: str,
    file: Path | None = typer.Option(None, "--file", help="the value's file (default: standard input)"),
    key: str | None = typer.Option(None, "--key", help="the key that encrypts it (default: 'secrets')"),
    path: str | None = typer.Option(None, "--path", help="where the guest finds it"),
    as_json: bool = JSON,
) -> None:
    """Store a secret (its value from standard input or --file); VMs get it with --secret NAME."""
    body = {"name": name, "secret_b64": _b64(_input(file)), "key": key, "path": path}
    made = client_of(ctx).post("/v1/kms/secrets", body)
    if as_json:
        print_json(made)
    else:
        out.print(f"secret {made['name']} ({made['id']}) stored; guests find it at {made['path']}")


@secret_app.command("list")
def secret_list(ctx: typer.Context, as_json: bool = JSON) -> None:
    """The tenant's secrets (never their values)."""
    print_list(client_of(ctx).get("/v1/kms/secrets"), SECRET_COLUMNS, as_json=as_json, empty="No secrets.")


@secret_app.command("delete")
def secret_delete(ctx: typer.Context, name: str) -> None:
    client_of(ctx).delete(f"/v1/kms/secrets/{name}")
    out.print(f"deleted secret {name}")
