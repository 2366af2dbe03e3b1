"""``novacron security blocks list|lift``: the sources threat detection blocked, and lifting one."""

from __future__ import annotations

import typer

from novacron.cli.common import JSON, client_of
from novacron.cli.output import Column, ago, human_time, out, print_json, print_list

app = typer.Typer(no_args_is_help=True)
blocks = typer.Typer(no_args_is_help=True)
app.add_typer(blocks, name="blocks", help="Addresses blocked by threat detection (administrators).")

COLUMNS: list[Column] = [
    ("ID", "id"),
    ("SOURCE", "source"),
    ("KIND", "kind"),
    ("REASON", "reason"),
    ("SINCE", lambda b: ago(b["created_at"])),
    ("UNTIL", lambda b: human_time(b["expires_at"])),
    ("LIFTED", lambda b: f"by {b['lifted_by']}" if b["lifted_at"] else ""),
]


@blocks.command("list")
def list_blocks(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="lifted and expired blocks too (the latest 500)"),
    as_json: bool = JSON,
) -> None:
    """Blocks in force: which address, why, and until when."""
    data = client_of(ctx).get("/v1/security/blocks", active=str(not all_).lower())
    print_list(data, COLUMNS, as_json=as_json, empty="No blocks.")


@blocks.command("lift")
def lift(ctx: typer.Context, block_id: str, as_json: bool = JSON) -> None:
    """Lift a block now: the address is served again (on every replica within seconds)."""
    block = client_of(ctx).delete(f"/v1/security/blocks/{block_id}")
    if as_json:
        print_json(block)
        return
    out.print(f"lifted {block['id']}: {block['source']} is served again")
