"""``novacron usage report``: a tenant's metered month, or every tenant's for a platform administrator.

The API reports one tenant at a time and asks a platform administrator (who belongs to no tenant)
for its ``tenant_id``. The README's ``novacron usage report --format csv`` must work for ``admin``
as written (issue 17 item 15), so without ``--tenant`` an administrator gets one report per tenant,
and any error about the API's ``tenant_id`` names the CLI's ``--tenant`` instead.
"""

from __future__ import annotations

import contextlib
import csv
import io
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from novacron.cli.client import ApiError, Client, CliError, resolve
from novacron.cli.names import names_of
from novacron.cli.output import Column, info, money, out, print_json, print_table

FORMATS = ("table", "json", "csv")
#: the API's query field -> the CLI option that fills it in
TENANT_OPTION = {"tenant_id": "--tenant"}
CSV_HEADER = ["month", "tenant", "tenant_id", "project", "project_id", "resource", "quantity", "unit", "cost"]


def _renamed(field: str, options: Mapping[str, str]) -> str:
    """``query.tenant_id`` -> ``--tenant`` when the mapping names the field's last part."""
    return options.get(field.rsplit(".", 1)[-1], field)


@contextlib.contextmanager
def cli_options(options: Mapping[str, str]) -> Iterator[None]:
    """Errors raised inside name the CLI's options (``--tenant``), not the API's fields (``tenant_id``)
    that the CLI filled in: the user typed the option, never the field."""
    try:
        yield
    except ApiError as exc:
        for e in exc.problem.get("errors") or []:
            if isinstance(e, dict) and e.get("field"):
                e["field"] = _renamed(str(e["field"]), options)
        detail = str(exc.problem.get("detail") or "")
        for name, option in options.items():
            detail = detail.replace(f"query.{name}", option).replace(f"{name}:", f"{option}:")
        exc.problem["detail"] = detail
        exc.message = detail or exc.message
        raise


def _needs_tenant(exc: ApiError) -> bool:
    """The API's answer to a platform administrator who named no tenant."""
    return exc.status == 422 and any(
        isinstance(e, dict)
        and str(e.get("field", "")).endswith("tenant_id")
        and "administrator" in str(e.get("reason"))
        for e in exc.problem.get("errors") or []
    )


def fetch(client: Client, tenant_ref: str | None, month: str | None) -> tuple[list[dict[str, Any]], bool]:
    """The reports to print: the named tenant's, the caller's own, or (a platform administrator
    naming none) every tenant's, in the tenants' listing order; True for the last."""
    with cli_options(TENANT_OPTION):
        if tenant_ref:
            tenant = resolve(client, "tenants", tenant_ref, "tenant")
            return [client.get("/v1/usage", tenant_id=tenant["id"], month=month)], False
        try:
            return [client.get("/v1/usage", month=month)], False
        except ApiError as exc:
            if not _needs_tenant(exc):
                raise
        tenants = client.list_all("/v1/tenants")["items"]
        if not tenants:
            raise CliError("there is no tenant to report on")
        info(f"[dim]Platform administrator: the usage of all {len(tenants)} tenants; one with --tenant.[/]")
        return [client.get("/v1/usage", tenant_id=t["id"], month=month) for t in tenants], True


def _write_csv(reports: list[dict[str, Any]], names: Mapping[str, str]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_HEADER)
    for r in reports:
        tenant = names.get(r["tenant_id"], r["tenant_id"])
        for i in r["items"]:
            row = [i["project"], i["project_id"], i["resource"], i["quantity"], i["unit"], i["cost"]]
            w.writerow([r["month"], tenant, r["tenant_id"], *row])
    sys.stdout.write(buf.getvalue())


def _print_tables(reports: list[dict[str, Any]], names: Mapping[str, str]) -> None:
    for r in reports:
        cur = r.get("currency", "")
        columns: list[Column] = [
            ("PROJECT", "project"),
            ("RESOURCE", "resource"),
            ("QUANTITY", lambda i: f"{i['quantity']:.4f}"),
            ("UNIT", "unit"),
            (f"COST {cur}".strip(), lambda i: f"{i['cost']:.4f}"),
        ]
        tenant = names.get(r["tenant_id"], r["tenant_id"])
        print_table(r["items"], columns, title=f"Usage of {tenant} in {r['month']}")
        budget = "" if r["budget"] is None else f" of budget {money(r['budget'], cur)}"
        out.print(f"total cost {money(r['total_cost'], cur)}{budget}")


def show(client: Client, tenant_ref: str | None, month: str | None, fmt: str) -> None:
    """Print the report(s) as a table, the API's JSON (a list of reports for every tenant), or CSV."""
    if fmt not in FORMATS:
        raise CliError("--format must be table, json or csv")
    reports, every_tenant = fetch(client, tenant_ref, month)
    if fmt == "json":
        print_json({"items": reports} if every_tenant else reports[0])
        return
    names = names_of(client, "/v1/tenants")
    if fmt == "csv":
        _write_csv(reports, names)
    else:
        _print_tables(reports, names)
