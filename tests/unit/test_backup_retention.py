"""GFS retention as a pure function: examples and properties (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from novacron.backup.retention import RetentionPolicy, select

T0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
HOUR = 3600.0


def test_gfs_example() -> None:
    # one snapshot every 6 hours for 60 days
    snaps = [(f"s{i:03d}", T0 + i * 6 * HOUR) for i in range(240)]
    keep = select(snaps, RetentionPolicy(keep_last=2, keep_daily=7, keep_weekly=4, keep_monthly=3))
    newest = snaps[-1][0]
    assert keep[newest] == ["keep_last", "keep_daily", "keep_weekly", "keep_monthly"]
    assert keep["s238"] == ["keep_last"]
    daily = sorted(s for s, rules in keep.items() if "keep_daily" in rules)
    assert len(daily) == 7 and all(int(s[1:]) % 4 == 3 for s in daily)  # the 18:00 one of each day
    assert len([s for s, r in keep.items() if "keep_monthly" in r]) == 2 + 1  # Jan, Feb, Mar
    assert len(keep) < 20


def test_a_policy_without_rules_keeps_everything() -> None:
    snaps = [("a", T0), ("b", T0 + 1)]
    assert set(select(snaps, RetentionPolicy())) == {"a", "b"}


times = st.lists(st.floats(min_value=T0, max_value=T0 + 800 * 24 * HOUR), min_size=0, max_size=60)
policies = st.builds(
    RetentionPolicy,
    keep_last=st.integers(0, 5),
    keep_hourly=st.integers(0, 5),
    keep_daily=st.integers(0, 8),
    keep_weekly=st.integers(0, 5),
    keep_monthly=st.integers(0, 13),
    keep_yearly=st.integers(0, 3),
)


@settings(max_examples=300, deadline=None)
@given(times, policies)
def test_properties(ts: list[float], policy: RetentionPolicy) -> None:
    snaps = [(f"s{i}", t) for i, t in enumerate(ts)]
    keep = select(snaps, policy)
    assert set(keep) <= {s for s, _ in snaps}
    if policy.keeps_nothing():
        assert len(keep) == len(snaps)
        return
    # never more than the rules allow, and the newest snapshot is always kept
    assert len(keep) <= sum(n for _, n in policy.rules())
    if snaps:
        assert max(snaps, key=lambda s: (s[1], s[0]))[0] in keep
    # keep_last keeps exactly the N newest
    ordered = [s for s, _ in sorted(snaps, key=lambda s: (s[1], s[0]), reverse=True)]
    assert {s for s, r in keep.items() if "keep_last" in r} == set(ordered[: policy.keep_last])
    # a snapshot kept by a period rule is the newest of its period
    by_id = dict(snaps)
    for sid, rules in keep.items():
        if "keep_daily" in rules:
            day = datetime.fromtimestamp(by_id[sid], UTC).date()
            same_day = [s for s, t in snaps if datetime.fromtimestamp(t, UTC).date() == day]
            assert max(same_day, key=lambda s: (by_id[s], s)) == sid
    # pruning is idempotent: what a policy kept, it keeps again
    kept = [(s, t) for s, t in snaps if s in keep]
    assert set(select(kept, policy)) == set(keep)
