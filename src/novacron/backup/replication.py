"""Replication of a chunk store to a second target (another region or cloud), on a schedule.

The replica is a byte-for-byte copy of the source's objects (sealed chunks, sealed indexes, wrapped
tenant keys, holds, results), so it is a complete store: ``ChunkStore(replica_target, keys)`` reads
it with the same platform key service, and it can itself be the source of another replicator
(chained topology); several replicators on one source make a fan-out.

A pass copies, per snapshot oldest first, the chunks the replica lacks and then the snapshot's
indexes: an index never arrives before its chunks, so a pass cut short (network, crash) leaves a
consistent replica and the next pass moves only what is still missing. Chunks already there are
found by one listing per tenant, not one request per chunk. Snapshots deleted at the source are
deleted at the replica unless a legal hold placed there keeps them. The replica's own garbage
collection takes the chunks of deleted snapshots; a pass in flight is safe from it because the
chunks it copies are younger than the collection's grace period.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from novacron.backup.store import ChunkStore
from novacron.backup.targets import ObjectNotFound, Target


@dataclass
class ReplicationReport:
    snapshots_copied: int = 0
    snapshots_deleted: int = 0
    chunks_copied: int = 0
    bytes_copied: int = 0
    chunks_already_there: int = 0
    seconds: float = 0.0


@dataclass
class Lag:
    #: snapshots of the source not (completely) at the replica
    snapshots_behind: int
    #: age of the oldest snapshot of the source missing at the replica (0 when in sync)
    seconds_behind: float
    #: when the last pass finished without error (None: never)
    last_success: float | None
    last_error: str | None = None
    per_tenant: dict[str, int] = field(default_factory=dict)


class Replicator:
    def __init__(
        self,
        source: ChunkStore,
        dest: Target,
        mirror_deletes: bool = True,
        workers: int = 4,
        keep: Callable[[str, str], bool] | None = None,
    ) -> None:
        self.source = source
        self.dest = dest
        self.mirror_deletes = mirror_deletes
        #: (tenant, snapshot) -> True for the replica's own snapshots (taken there while failed
        #: over), which a deletion mirrored from the source must not take
        self.keep = keep
        self.workers = workers
        self.last_success: float | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._run_lock = threading.Lock()

    def _copy(self, key: str) -> int:
        data = self.source.target.get(key)
        self.dest.put(key, data)
        return len(data)

    def _dest_snapshots(self, tenant_id: str) -> dict[str, set[str]]:
        prefix = f"snapshots/{tenant_id}/"
        out: dict[str, set[str]] = {}
        for key in self.dest.list(prefix):
            sid, disk = key[len(prefix) :].split("/", 1)
            out.setdefault(sid, set()).add(disk)
        return out

    def run_once(self) -> ReplicationReport:
        """One pass: bring the replica up to date with the source as it is now."""
        with self._run_lock:
            started = time.monotonic()
            report = ReplicationReport()
            try:
                self._pass(report)
            except Exception as e:
                self.last_error = f"{type(e).__name__}: {e}"
                raise
            self.last_success, self.last_error = time.time(), None
            report.seconds = round(time.monotonic() - started, 3)
            return report

    def _pass(self, report: ReplicationReport) -> None:
        src = self.source.target
        if not self.dest.has("config.json"):
            self._copy("config.json")
        for key in src.list("keys/"):
            data = src.get(key)
            try:
                same = self.dest.get(key) == data
            except ObjectNotFound:
                same = False
            if not same:  # new tenant, or its key re-wrapped after a KEK rotation
                self.dest.put(key, data)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="replicate") as pool:
            for tenant_id in self.source.tenants():
                self._tenant(tenant_id, pool, report)

    def _tenant(self, tenant_id: str, pool: ThreadPoolExecutor, report: ReplicationReport) -> None:
        src = self.source.target
        have = set(self.dest.list(f"chunks/{tenant_id}/"))
        at_dest = self._dest_snapshots(tenant_id)
        source_ids = set()
        for info in self.source.list_snapshots(tenant_id):
            sid = info.snapshot_id
            source_ids.add(sid)
            disks = {f"{d}.idx" for d in info.disks}
            if disks <= at_dest.get(sid, set()):
                continue
            needed: set[str] = set()
            for disk in info.disks:
                index = self.source.load_index(tenant_id, sid, disk)
                needed.update(self.source.chunk_key(tenant_id, c) for c in index.referenced())
            missing = sorted(needed - have)
            report.chunks_already_there += len(needed) - len(missing)
            for n in pool.map(self._copy, missing):
                report.chunks_copied += 1
                report.bytes_copied += n
            have.update(missing)
            for extra in ("holds", "results"):
                for key in src.list(f"{extra}/{tenant_id}/{sid}/"):
                    self._copy(key)
            for disk in sorted(info.disks):  # indexes last: the snapshot appears complete
                self._copy(self.source.index_key(tenant_id, sid, disk))
            report.snapshots_copied += 1
        self._sync_holds(tenant_id, source_ids)
        if self.mirror_deletes:
            self._delete_gone(tenant_id, at_dest, source_ids, report)

    def _delete_gone(
        self, tenant_id: str, at_dest: dict[str, set[str]], source_ids: set[str], report: ReplicationReport
    ) -> None:
        """Delete the destination's snapshots the source no longer has (unless kept or held)."""
        for sid, disks in at_dest.items():
            if sid in source_ids or (self.keep is not None and self.keep(tenant_id, sid)):
                continue
            if any(True for _ in self.dest.list(f"holds/{tenant_id}/{sid}/")):
                continue
            for disk in disks:
                self.dest.delete(f"snapshots/{tenant_id}/{sid}/{disk}")
            report.snapshots_deleted += 1

    def _sync_holds(self, tenant_id: str, source_ids: set[str]) -> None:
        """Holds placed or released at the source since the snapshot was copied."""
        src_holds = {
            k for k in self.source.target.list(f"holds/{tenant_id}/") if k.split("/")[2] in source_ids
        }
        dest_holds = {k for k in self.dest.list(f"holds/{tenant_id}/") if k.split("/")[2] in source_ids}
        for key in src_holds - dest_holds:
            self._copy(key)
        for key in dest_holds - src_holds:
            self.dest.delete(key)

    def lag(self, now: float | None = None) -> Lag:
        """How far the replica is behind the source right now."""
        now = time.time() if now is None else now
        behind = 0
        oldest: float | None = None
        per_tenant: dict[str, int] = {}
        for tenant_id in self.source.tenants():
            at_dest = self._dest_snapshots(tenant_id)
            for info in self.source.list_snapshots(tenant_id):
                if {f"{d}.idx" for d in info.disks} <= at_dest.get(info.snapshot_id, set()):
                    continue
                behind += 1
                per_tenant[tenant_id] = per_tenant.get(tenant_id, 0) + 1
                oldest = info.created_at if oldest is None else min(oldest, info.created_at)
        return Lag(
            snapshots_behind=behind,
            seconds_behind=0.0 if oldest is None else max(0.0, now - oldest),
            last_success=self.last_success,
            last_error=self.last_error,
            per_tenant=per_tenant,
        )

    # --- schedule -----------------------------------------------------------------------------

    def start(self, interval_s: float) -> None:
        """Run a pass now and every ``interval_s`` seconds in a background thread until stop()."""
        if self._thread and self._thread.is_alive():
            raise RuntimeError("replicator already running")
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                # a failure is kept in last_error, visible through lag(); the next pass retries
                with contextlib.suppress(Exception):
                    self.run_once()
                self._stop.wait(interval_s)

        self._thread = threading.Thread(target=loop, name="replicator", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 60.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout_s)
            self._thread = None
