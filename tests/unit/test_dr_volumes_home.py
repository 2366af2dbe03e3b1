"""Where a DR fail-back writes each volume of a recovered VM (``volrestore.home_volumes``): over the
original volume it was recovered from when that is still the original VM's, else into a new volume
made for the original VM and charged to its project; ``release`` gives a new one back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from novacron.backup import volrestore
from novacron.db.base import Database
from novacron.db.migrate import upgrade
from novacron.db.models import VM, Project, QuotaCharge, Tenant, Volume


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/nc.db")
    upgrade(database)
    with database.session() as s:
        s.add(Tenant(id="t1", name="t1"))
        s.flush()
        s.add(Project(id="p1", tenant_id="t1", name="main"))
        s.flush()
        for vm_id, name in (("vm-orig", "db"), ("vm-dr", "db-dr")):
            s.add(VM(id=vm_id, name=name, project_id="p1", tenant_id="t1", vcpus=1, ram_mb=256, disk_gb=1))
        s.flush()
        volumes: tuple[tuple[str, str | None, str | None, str], ...] = (
            ("vol-kept", "vm-orig", None, "file"),  # still the original's: written over in place
            ("vol-gone", None, None, "file"),  # detached from the original since: a new one is made
            ("vol-dr-1", "vm-dr", "vol-kept", "file"),
            ("vol-dr-2", "vm-dr", "vol-gone", "rbd"),
        )
        for vid, owner, source, pool in volumes:
            s.add(Volume(
                id=vid, name=vid, project_id="p1", tenant_id="t1", size_gb=2, pool=pool,
                location=f"/nowhere/{vid}", status="in-use" if owner else "available", vm_id=owner,
                source_volume_id=source, io_limits={"iops_total": 50} if vid == "vol-dr-2" else {},
            ))  # fmt: skip
    yield database
    database.engine.dispose()


def test_a_recovered_volume_goes_over_its_original_or_into_a_new_one(db: Database) -> None:
    with db.session() as s:
        original = s.get(VM, "vm-orig")
        assert original is not None
        plan = volrestore.home_volumes(s, "vm-dr", original)
    assert [(p["source"], p["kind"]) for p in plan] == [("vol-dr-1", "home"), ("vol-dr-2", "new")]
    assert plan[0]["volume_id"] == "vol-kept"
    with db.session() as s:
        made = s.get(Volume, plan[1]["volume_id"])
        assert made is not None
        # the original's own pool (vol-gone's), claimed by the original VM, its file not made yet
        assert (made.pool, made.vm_id, made.status, made.size_gb) == ("file", "vm-orig", "creating", 2)
        assert made.source_volume_id == "vol-dr-2" and made.io_limits == {"iops_total": 50}
        assert s.get(QuotaCharge, ("volume", made.id)) is not None  # counted, not refused
    # a failed fail-back gives the new volume back (no file made yet: nothing to delete)
    ctx = cast(Any, SimpleNamespace(db=db, settings=None))
    volrestore.release(ctx, [{"volume_id": plan[1]["volume_id"]}])
    with db.session() as s:
        assert s.get(Volume, plan[1]["volume_id"]) is None
        assert s.get(QuotaCharge, ("volume", plan[1]["volume_id"])) is None
