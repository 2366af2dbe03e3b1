"""Reading a VM's serial console log from an offset, or its tail."""

from __future__ import annotations

from pathlib import Path

MAX_CHUNK = 1_048_576


def read_log(path: Path, offset: int = 0, tail: int | None = None) -> tuple[bytes, int]:
    """Up to 1 MiB from ``offset`` (or the last ``tail`` bytes); returns the data and the next offset."""
    if not path.exists():
        return b"", offset
    with path.open("rb") as f:
        size = f.seek(0, 2)
        start = max(size - tail, 0) if tail is not None else min(offset, size)
        f.seek(start)
        data = f.read(MAX_CHUNK)
    return data, start + len(data)
