"""Starter flavors for a new installation."""

from __future__ import annotations

from sqlalchemy import select

from novacron.db.base import Database, new_id
from novacron.db.models import Flavor

STARTER_FLAVORS = (("tiny", 1, 128, 1), ("small", 1, 512, 4), ("medium", 2, 2048, 10), ("large", 4, 8192, 40))


def ensure_flavors(db: Database) -> None:
    with db.session() as s:
        if s.scalar(select(Flavor.id).limit(1)) is not None:
            return
        for name, vcpus, ram_mb, disk_gb in STARTER_FLAVORS:
            s.add(Flavor(id=new_id("flv"), name=name, vcpus=vcpus, ram_mb=ram_mb, disk_gb=disk_gb))
