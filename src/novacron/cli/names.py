"""Names for ids in listings, and filter values checked before a request: a listing shows
``vm web-1`` where the API gives ``vm-5a9d…``, and ``--state runing`` is refused with the valid states
instead of answering "No VMs."."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from novacron.cli.client import ApiError, Client, CliError

#: a VM's states (compute/reports.py STATE_OF, plus "building" before its first start)
VM_STATES = ("building", "running", "paused", "stopped", "crashed", "error")
#: a durable task's states (tasks/runner.py)
TASK_STATES = ("pending", "running", "succeeded", "failed", "cancelled")

#: where the resources a task or a listing names are listed, by their ``resource_type``
COLLECTIONS = {
    "vm": "/v1/vms",
    "image": "/v1/images",
    "volume": "/v1/volumes",
    "host": "/v1/hosts",
    "network": "/v1/networks",
    "loadbalancer": "/v1/loadbalancers",
    "runbook": "/v1/dr/runbooks",
    "scaling_group": "/v1/scaling-groups",
}


def choose(option: str, value: str | None, allowed: Sequence[str]) -> None:
    """Refuse a filter value that can match nothing, naming the values that can."""
    if value is not None and value not in allowed:
        raise CliError(f"{option} '{value}' is not a valid value: use one of {', '.join(allowed)}")


def names_of(client: Client, collection: str) -> dict[str, str]:
    """id -> name of everything in one collection you can see (one listing, not a request per row);
    empty when you may not list it: the ids are shown then."""
    try:
        items = client.list_all(collection)["items"]
    except ApiError:
        return {}
    return {str(i["id"]): str(i.get("name") or i["id"]) for i in items if isinstance(i, dict) and "id" in i}


def name_resources(client: Client, rows: Iterable[dict[str, Any]], kind_key: str, id_key: str) -> None:
    """Add ``resource_name`` to each row (``vm web-1``): the kind and name of what ``id_key`` points at,
    from one listing per kind of resource present."""
    rows = list(rows)
    names: dict[str, str] = {}
    for kind in sorted({str(r.get(kind_key)) for r in rows}):
        if kind in COLLECTIONS:
            names.update(names_of(client, COLLECTIONS[kind]))
    for r in rows:
        rid = str(r.get(id_key) or "")
        r["resource_name"] = f"{r.get(kind_key) or ''} {names.get(rid, rid)}".strip()
