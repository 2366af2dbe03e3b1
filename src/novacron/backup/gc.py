"""Garbage collection of unreferenced chunks, safe while backups run.

Mark and sweep over the target, with three guards so that a running backup never ends with an
index that names a missing chunk:

1. **Journal/lease.** A backup writes ``inflight/<tenant>/<snapshot>/<disk>/lease.json`` before it
   relies on any chunk, a ``seg-planned.json`` naming the chunks it copies from its parent, and a
   segment per batch of chunks it has stored. The mark phase reads leases *before* indexes: a
   backup that finished in between wrote its index before deleting its lease, so it is seen either
   way.
2. **Grace period.** The sweep deletes only chunks whose object is older than ``grace_s`` at the
   start of the collection, so a chunk uploaded by an in-flight backup but not yet journaled is
   never swept.
3. **Generation fence.** ``gc/state.json`` holds a generation number, incremented when a collection
   starts, and whether one is running. A backup notes the generation in its lease; before it writes
   its index it compares: if a collection started since (or was running), it waits for it to end,
   checks that every chunk it names still exists, re-reads and re-uploads any that do not, and
   checks again. This closes the last gap: a chunk found present (deduplicated) just before a
   concurrent sweep removed it.

One collection runs at a time per target (``gc/lock``, created with a conditional write).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from novacron.backup.targets import ObjectNotFound, Target

if TYPE_CHECKING:
    from novacron.backup.store import ChunkStore

STATE = "gc/state.json"
LOCK = "gc/lock"
#: a collection whose lock or running state is older than this is taken to have died
GC_STALE_S = 6 * 3600.0
#: a lease not renewed for this long belongs to a backup that died; its chunks are no longer kept
LEASE_TTL_S = 7 * 24 * 3600.0
#: how often a backup polls while a collection runs
POLL_S = 0.5


class GCBusy(RuntimeError):
    """Another garbage collection holds the lock of this target."""


@dataclass
class GCReport:
    generation: int
    chunks_total: int
    chunks_referenced: int
    chunks_removed: int
    bytes_removed: int
    #: unreferenced chunks kept because they are younger than the grace period
    chunks_young: int
    leases_active: int
    #: leases of backups dead for longer than LEASE_TTL_S, removed with their journals
    leases_stale: int
    seconds: float


def read_state(target: Target) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(target.get(STATE))
    except ObjectNotFound:
        state = {"generation": 0, "running": False}
    if state.get("running") and time.time() - state.get("started", 0) > GC_STALE_S:
        state["running"] = False
    return state


class Journal:
    """The lease and progress journal of one disk backup in flight."""

    def __init__(self, target: Target, tenant_id: str, snapshot_id: str, disk: str) -> None:
        self.target = target
        self.prefix = f"inflight/{tenant_id}/{snapshot_id}/{disk}/"
        self.lease: dict[str, Any] = {}
        self._seq = 0

    def _save_lease(self) -> None:
        self.lease["heartbeat"] = time.time()
        self.target.put(self.prefix + "lease.json", json.dumps(self.lease).encode())

    def open(self, planned: list[str]) -> dict[int, str | None]:
        """Start or resume; returns the chunk entries an earlier attempt already stored."""
        done: dict[int, str | None] = {}
        try:
            self.lease = json.loads(self.target.get(self.prefix + "lease.json"))
            for key in self.target.list(self.prefix + "seg-"):
                if key.endswith("seg-planned.json"):
                    continue
                self._seq = max(self._seq, int(key.rsplit("-", 1)[1].split(".")[0]))
                for i, cid in json.loads(self.target.get(key)).items():
                    done[int(i)] = cid
        except ObjectNotFound:
            state = read_state(self.target)
            # created during a collection: it must be fenced even if no new one starts
            self.lease = {
                "started": time.time(),
                "generation": -1 if state["running"] else state["generation"],
            }
            self.lease["host"] = f"{socket.gethostname()}:{os.getpid()}"
        self.target.put(self.prefix + "seg-planned.json", json.dumps(sorted(set(planned))).encode())
        self._save_lease()
        return done

    def record(self, entries: dict[int, str | None]) -> None:
        self._seq += 1
        body = json.dumps({str(i): c for i, c in entries.items()}).encode()
        self.target.put(f"{self.prefix}seg-{self._seq:06d}.json", body)
        self._save_lease()

    def wait_for_quiet_gc(self, timeout_s: float = GC_STALE_S) -> int | None:
        """None when no collection ran since the lease's generation; else the generation of the
        collection that ran (after waiting for it to finish)."""
        deadline = time.monotonic() + timeout_s
        while True:
            state = read_state(self.target)
            if not state["running"]:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("garbage collection still running")
            self._save_lease()
            time.sleep(POLL_S)
        generation = int(state["generation"])
        return None if generation == self.lease["generation"] else generation

    def accept_generation(self, generation: int) -> None:
        self.lease["generation"] = generation
        self._save_lease()

    def close(self) -> None:
        keys = sorted(self.target.list(self.prefix), key=lambda k: k.endswith("lease.json"))
        for key in keys:  # the lease goes last
            self.target.delete(key)


def _lock(target: Target) -> None:
    body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()}).encode()
    if target.put_if_absent(LOCK, body):
        return
    try:
        held = json.loads(target.get(LOCK))
    except ObjectNotFound:
        held = {"at": 0}
    if time.time() - held.get("at", 0) < GC_STALE_S:
        raise GCBusy(f"garbage collection already running ({held.get('host')} pid {held.get('pid')})")
    target.delete(LOCK)
    if not target.put_if_absent(LOCK, body):
        raise GCBusy("garbage collection already running")


def _lease_refs(store: ChunkStore, now: float) -> tuple[set[str], int, list[str]]:
    """Chunks named by live leases and journals, how many leases live, the prefixes of dead ones."""
    refs: set[str] = set()
    active = 0
    stale: list[str] = []
    keys = list(store.target.list("inflight/"))
    live_prefixes = set()
    for key in keys:
        if key.endswith("/lease.json"):
            lease = json.loads(store.target.get(key))
            if now - lease.get("heartbeat", 0) > LEASE_TTL_S:
                stale.append(key[: -len("lease.json")])
            else:
                active += 1
                live_prefixes.add(key[: -len("lease.json")])
    for key in keys:
        prefix, name = key.rsplit("/", 1)
        if prefix + "/" not in live_prefixes or not name.startswith("seg-"):
            continue
        tenant_id = key.split("/")[1]
        body = json.loads(store.target.get(key))
        ids = body if isinstance(body, list) else [c for c in body.values() if c]
        refs.update(store.chunk_key(tenant_id, c) for c in ids)
    return refs, active, stale


def collect(store: ChunkStore, grace_s: float, now: float | None = None) -> GCReport:
    target = store.target
    t0 = time.monotonic()
    start = time.time() if now is None else now
    _lock(target)
    try:
        generation = int(read_state(target)["generation"]) + 1
        target.put(
            STATE, json.dumps({"generation": generation, "running": True, "started": time.time()}).encode()
        )
        try:
            # mark: leases strictly before indexes (see the module docstring)
            refs, active, stale = _lease_refs(store, start)
            for tenant_id in store.tenants():
                for snapshot_id in store.snapshot_ids(tenant_id):
                    for disk in store.disks(tenant_id, snapshot_id):
                        index = store.load_index(tenant_id, snapshot_id, disk)
                        refs.update(store.chunk_key(tenant_id, c) for c in index.referenced())
            total = removed = removed_bytes = young = referenced = 0
            cutoff = start - grace_s
            for key, mtime, size in target.scan("chunks/"):
                total += 1
                if key in refs:
                    referenced += 1
                elif mtime > cutoff:
                    young += 1
                else:
                    target.delete(key)
                    removed += 1
                    removed_bytes += size
            # a backup that died long ago starts afresh if ever retried (its chunks may be gone;
            # one still alive would rewrite its lease and be caught by the generation fence)
            for prefix in stale:
                for key in sorted(target.list(prefix), key=lambda k: k.endswith("lease.json")):
                    target.delete(key)
        finally:
            done = {"generation": generation, "running": False, "finished": time.time()}
            target.put(STATE, json.dumps(done).encode())
    finally:
        target.delete(LOCK)
    return GCReport(
        generation,
        total,
        referenced,
        removed,
        removed_bytes,
        young,
        active,
        len(stale),
        round(time.monotonic() - t0, 3),
    )
