"""An nbdkit plugin serving one backup snapshot's disk, read-only, straight from the chunk store.

Instant restore boots a VM whose disk is a qcow2 overlay backed by this export, while QEMU's
``block-stream`` copies the data into the overlay (``backup/instant.py``). nbdkit runs this file
in its embedded Python (Debian's ``nbdkit-plugin-python``), so nothing here is imported at load
time but the standard library: the venv's packages are put on ``sys.path`` from the ``site``
parameter first. Parameters (``nbdkit python nbdsource.py key=value ...``):

- ``secrets``: a JSON file holding the operation's ``secrets`` (target and the tenant's data key)
  and ``snapshot_id``; read once and deleted, so the key is on disk only until nbdkit starts;
- ``site``: the venv's site-packages directory;
- ``cache``: decoded chunks kept in memory (default 8; a chunk is 4 MiB by default).
"""

from __future__ import annotations

import json
import site
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

API_VERSION = 2
DISK = "vda"

_params: dict[str, str] = {}
_source: SnapshotSource | None = None


class SnapshotSource:
    """Random reads of a snapshot's disk, with the last chunks read kept decoded."""

    def __init__(self, store: Any, tenant_id: str, snapshot_id: str, cache_chunks: int) -> None:
        self.store = store
        self.tenant_id = tenant_id
        self.index = store.load_index(tenant_id, snapshot_id, DISK)
        self.codec = store.codec(tenant_id)
        self.size = int(self.index.size)
        self.chunk_size = int(self.index.chunk_size)
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_chunks = max(1, cache_chunks)
        self._lock = threading.Lock()
        self._packs: Any = None  # patches.PackCache, made once the venv is on sys.path

    def _open(self, cid: str) -> bytes:
        data: bytes = self.codec.open_chunk(
            cid, self.store.target.get(self.store.chunk_key(self.tenant_id, cid))
        )
        return data

    def chunk(self, i: int) -> bytes | None:
        from novacron.backup import patches  # after config_complete put the venv on sys.path

        cid, patch = self.index.chunks[i], self.index.patches.get(str(i))
        if cid is None and patch is None:
            return None
        with self._lock:
            if i in self._cache:
                self._cache.move_to_end(i)
                return self._cache[i]
        # fetched outside the lock: QEMU reads in parallel and a remote target is slow
        length = min(self.chunk_size, self.size - i * self.chunk_size)
        if self._packs is None:
            self._packs = patches.PackCache(self._open)
        data = patches.assemble(self._open(cid) if cid else None, length, patch, self._packs)
        if data is None:
            return None
        with self._lock:
            self._cache[i] = data
            while len(self._cache) > self._cache_chunks:
                self._cache.popitem(last=False)
        return data

    def extents(self, count: int, offset: int, hole: int) -> list[tuple[int, int, int]]:
        """(offset, length, type) runs from ``offset``: a chunk never stored reads as zeros, so the
        copy into the VM's disk skips it instead of writing zeros there."""
        return [
            (start, length, 0 if stored else hole)
            for start, length, stored in chunk_runs(
                self.index.stored(), self.chunk_size, self.size, offset, offset + count
            )
        ]

    def read_into(self, buf: memoryview, offset: int) -> None:
        pos, end, out = offset, offset + len(buf), 0
        while pos < end:
            i, within = divmod(pos, self.chunk_size)
            take = min(self.chunk_size - within, end - pos)
            data = self.chunk(i)
            if data is None or within >= len(data):
                buf[out : out + take] = bytes(take)
            else:
                piece = data[within : within + take]
                buf[out : out + len(piece)] = piece
                if len(piece) < take:  # the disk's last chunk is short
                    buf[out + len(piece) : out + take] = bytes(take - len(piece))
            pos += take
            out += take


def chunk_runs(
    chunks: list[bool], chunk_size: int, size: int, start: int = 0, end: int | None = None
) -> list[tuple[int, int, bool]]:
    """(offset, length, stored) runs of a snapshot's bytes from ``start`` to ``end`` (the disk's
    end by default): ``stored`` is False where the chunks were never stored (all zeros)."""
    runs: list[tuple[int, int, bool]] = []
    pos, end = start, size if end is None else min(end, size)
    while pos < end:
        i = pos // chunk_size
        take = min((i + 1) * chunk_size, end) - pos
        stored = chunks[i]
        if runs and runs[-1][2] == stored:
            runs[-1] = (runs[-1][0], runs[-1][1] + take, stored)
        else:
            runs.append((pos, take, stored))
        pos += take
    return runs


def open_source(secrets_path: str, cache_chunks: int) -> SnapshotSource:
    from novacron.backup.vmstore import agent_store

    path = Path(secrets_path)  # not open(): nbdkit's callback of that name shadows it here
    spec = json.loads(path.read_text())
    path.unlink()
    secrets = spec["secrets"]
    return SnapshotSource(
        agent_store(secrets), str(secrets["tenant_id"]), str(spec["snapshot_id"]), cache_chunks
    )


# --- the nbdkit plugin callbacks -----------------------------------------------------------------


def config(key: str, value: str) -> None:
    if key not in ("secrets", "site", "cache"):
        raise RuntimeError(f"unknown parameter {key!r}")
    _params[key] = value


def config_complete() -> None:
    global _source
    if "secrets" not in _params:
        raise RuntimeError("the secrets=FILE parameter is required")
    if "site" in _params:
        site.addsitedir(_params["site"])  # its .pth files too: an editable install is found by one
    _source = open_source(_params["secrets"], int(_params.get("cache", "8")))


def thread_model() -> int:
    import nbdkit  # nbdkit's embedded module

    return int(nbdkit.THREAD_MODEL_PARALLEL)


def open(readonly: bool) -> int:  # noqa: A001 - the name nbdkit calls
    return 1


def get_size(handle: int) -> int:
    assert _source is not None
    return _source.size


def can_write(handle: int) -> bool:
    return False


def can_multi_conn(handle: int) -> bool:
    return True  # read-only: every connection sees the same bytes


def can_extents(handle: int) -> bool:
    return True


def extents(handle: int, count: int, offset: int, flags: int) -> list[tuple[int, int, int]]:
    import nbdkit

    assert _source is not None
    return _source.extents(count, offset, int(nbdkit.EXTENT_HOLE | nbdkit.EXTENT_ZERO))


def pread(handle: int, buf: memoryview, offset: int, flags: int) -> None:
    assert _source is not None
    _source.read_into(buf, offset)
