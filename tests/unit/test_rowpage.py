"""The VM list's page, serialised from rows, is byte for byte what ``Page[VMOut]`` gives."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from novacron.api.listing import Page
from novacron.api.routers.vms import VMOut, _list_row
from novacron.api.rowpage import RowPage


def _row(i: int, **over: Any) -> dict[str, Any]:
    """A row as ``VMService.list_rows`` reads it (the list's columns, then ``ips``/``ip_source``)."""
    row: dict[str, Any] = {
        "id": f"vm-{i:020d}",
        "name": f"vm{i:04d}",
        "project_id": "prj-1",
        "tenant_id": "tnt-1",
        "image_id": "img-1",
        "flavor_id": None,
        "host_id": "hst-1",
        "vcpus": 1,
        "ram_mb": 512,
        "disk_gb": 2,
        "state": "running",
        "desired_state": "running",
        "task_state": None,
        "error": None,
        "metadata": {"owner": 'Zoë \u2603 "quoted" \\ </script>'},
        "server_group_id": None,
        "placement": {"aggregate": "agg-1", "labels": {"rack": "r1"}, "weight": 0.5, "n": 3},
        "ha": True,
        "ha_priority": -7,
        "labels": {"app": "web"},
        "created_at": datetime(2026, 12, 7, 10, 0, 0, 123456, tzinfo=UTC),
        "updated_at": datetime(2026, 12, 7, 10, 0, 1, tzinfo=UTC),
        "version": 4,
        "ips": ["10.0.0.5/24", "fd00::5/64"],
        "ip_source": "agent",
    }
    row.update(over)
    return row


def _as_models(rows: list[dict[str, Any]], cursor: str | None) -> bytes:
    """What the list answered before (one ``VMOut.model_construct`` per row)."""
    items = [VMOut.model_construct(**_list_row(dict(r))) for r in rows]
    return Page[VMOut].model_construct(items=items, next_cursor=cursor).model_dump_json().encode()


@pytest.mark.parametrize("cursor", [None, "eyJhIjoxfQ"])
def test_row_page_matches_model_page(cursor: str | None) -> None:
    rows = [
        _row(0),
        # JSON columns left NULL and no address known: empty maps, no addresses, no source
        _row(1, metadata=None, placement=None, labels=None, ips=None, ip_source=None, error="boom"),
        _row(2, task_state="migrating", flavor_id="flv-1", ip_source="port", ips=["192.0.2.1/32"]),
    ]
    got = RowPage(VMOut).dump_json([_list_row(dict(r)) for r in rows], cursor)
    assert got == _as_models(rows, cursor)
    item = Page[VMOut].model_validate_json(got).items[1]
    assert (item.metadata, item.ips, item.ip_source, item.guest) == ({}, [], "", None)


def test_empty_page_and_missing_required_field() -> None:
    page = RowPage(VMOut)
    assert page.dump_json([], None) == b'{"items":[],"next_cursor":null}' == _as_models([], None)
    broken = _row(0)
    del broken["name"]
    with pytest.raises(KeyError):
        page.dump_json([broken], None)
