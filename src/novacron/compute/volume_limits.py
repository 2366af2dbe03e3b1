"""Per-volume I/O limits: what a caller may ask for, checked before QEMU sees it.

A volume's limits are those of its own QEMU ``throttle-group`` (``virt/volumes.py``): operations
per second and bytes per second, in total or per direction (QEMU refuses both at once), and a
burst over the total limit (``*_max``) that a guest may keep for ``*_max_length`` seconds. A limit
left out (or 0) is no limit.
"""

from __future__ import annotations

from collections.abc import Mapping

from novacron.errors import InvalidInput
from novacron.virt.volumes import LIMIT_KEYS

MAX_IOPS = 1_000_000
MAX_BPS = 100 * 2**30  # 100 GiB/s: beyond any device a volume sits on
MIN_BPS = 4096  # one block a second; less would starve a guest's every request
MAX_BURST_S = 3600
RANGES: dict[str, tuple[int, int]] = {
    **{k: (1, MAX_IOPS) for k in LIMIT_KEYS if k.startswith("iops") and not k.endswith("_length")},
    **{k: (MIN_BPS, MAX_BPS) for k in LIMIT_KEYS if k.startswith("bps") and not k.endswith("_length")},
    **{k: (1, MAX_BURST_S) for k in LIMIT_KEYS if k.endswith("_length")},
}


def validate(asked: Mapping[str, int | None]) -> dict[str, int]:
    """The limits to keep (unset ones dropped); InvalidInput naming the first wrong field."""
    limits: dict[str, int] = {}
    for key, value in asked.items():
        if key not in RANGES:
            raise InvalidInput(f"io_limits.{key}", f"unknown limit (known: {', '.join(LIMIT_KEYS)})")
        if not value:
            continue
        low, high = RANGES[key]
        if not low <= value <= high:
            raise InvalidInput(f"io_limits.{key}", f"must be between {low} and {high} (or 0: no limit)")
        limits[key] = int(value)
    for kind in ("iops", "bps"):
        total, burst, length = f"{kind}_total", f"{kind}_total_max", f"{kind}_total_max_length"
        for side in (f"{kind}_read", f"{kind}_write"):
            if total in limits and side in limits:
                raise InvalidInput(f"io_limits.{side}", f"give {total} or {kind}_read/{kind}_write, not both")
        if burst in limits:
            if total not in limits:
                raise InvalidInput(f"io_limits.{burst}", f"a burst needs {total} (the rate it bursts over)")
            if limits[burst] < limits[total]:
                raise InvalidInput(
                    f"io_limits.{burst}",
                    f"must be at least {total} ({limits[total]}): a burst is above the limit",
                )
        elif length in limits:
            raise InvalidInput(f"io_limits.{length}", f"a burst length needs {burst}")
    return limits
