"""GFS (grandfather-father-son) retention: which snapshots a policy keeps. A pure function.

Each rule keeps, walking from the newest snapshot back, the newest snapshot of each of its last N
periods that have a snapshot (``keep_last``: the N newest snapshots). Rules are independent and
the union is kept, as in restic's ``forget``; periods are UTC hours, days, ISO weeks, months and
years. Applying a policy to what it kept keeps all of it again (prune is idempotent).

A policy's ``immutable_days`` is the window after a backup during which the store refuses to delete
it (the backup job writes ``immutable_until = created_at + immutable_days``); legal holds are
per snapshot and outrank every policy. Both are enforced by the store, not here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class RetentionPolicy:
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    #: days after a backup during which nobody can delete it
    immutable_days: float = 0.0

    def __post_init__(self) -> None:
        for name, value in self.rules():
            if value < 0:
                raise ValueError(f"{name} must not be negative")
        if self.immutable_days < 0:
            raise ValueError("immutable_days must not be negative")

    def rules(self) -> list[tuple[str, int]]:
        return [
            ("keep_last", self.keep_last),
            ("keep_hourly", self.keep_hourly),
            ("keep_daily", self.keep_daily),
            ("keep_weekly", self.keep_weekly),
            ("keep_monthly", self.keep_monthly),
            ("keep_yearly", self.keep_yearly),
        ]

    def immutable_until(self, created_at: float) -> float | None:
        """The ``immutable_until`` a backup taken at ``created_at`` under this policy gets."""
        return created_at + self.immutable_days * 86400.0 if self.immutable_days else None

    def keeps_nothing(self) -> bool:
        return all(v == 0 for _, v in self.rules())


def _period(rule: str) -> Callable[[datetime], object]:
    periods: dict[str, Callable[[datetime], object]] = {
        "keep_hourly": lambda t: (t.year, t.month, t.day, t.hour),
        "keep_daily": lambda t: (t.year, t.month, t.day),
        "keep_weekly": lambda t: t.isocalendar()[:2],
        "keep_monthly": lambda t: (t.year, t.month),
        "keep_yearly": lambda t: t.year,
    }
    return periods[rule]


def select(snapshots: Sequence[tuple[str, float]], policy: RetentionPolicy) -> dict[str, list[str]]:
    """Which of ``(snapshot_id, created_at epoch seconds)`` the policy keeps, each with the rules
    that keep it. A policy with no rule keeps everything (pruning with it is a mistake, not an
    instruction to delete every backup)."""
    if policy.keeps_nothing():
        return {sid: ["no rule"] for sid, _ in snapshots}
    ordered = sorted(snapshots, key=lambda s: (s[1], s[0]), reverse=True)
    keep: dict[str, list[str]] = {}
    for rule, count in policy.rules():
        if count == 0:
            continue
        # keep_last: every snapshot is a period of its own
        period = None if rule == "keep_last" else _period(rule)
        seen: set[object] = set()
        for sid, created in ordered:
            key = period(datetime.fromtimestamp(created, UTC)) if period else sid
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.add(key)
            keep.setdefault(sid, []).append(rule)
    return keep
