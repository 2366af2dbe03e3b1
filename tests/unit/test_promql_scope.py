"""The Prometheus-side tenant rewrite: every selector gets the tenant matcher, nothing else changes
meaning, and what cannot be scoped is refused on ``query``."""

from __future__ import annotations

import promql_parser as pp
import pytest

from novacron.errors import InvalidInput
from novacron.monitoring.promql import scope_to_tenant, selector_matchers

TENANT = 'tenant-"odd"\\'


def _selectors(promql: str) -> list[pp.VectorSelector]:
    found: list[pp.VectorSelector] = []

    def visit(node: pp.Expr) -> bool:
        if isinstance(node, pp.VectorSelector):
            found.append(node)
        return True

    pp.walk(pp.parse(promql), pre_visit=visit)
    return found


@pytest.mark.parametrize(
    "query",
    [
        'sum(rate(foo{a="b"}[5m] offset 1m)) or label_replace({__name__=~".+"}, "x", "y", "z", "w")',
        'max_over_time(bar{tenant_id!="me"}[1h:1m] @ 100) and on () absent(baz @ start())',
        "rate(q[5m] @ 1000 offset -5m) / ignoring (mode) count by (tenant_id) (up)",
        'up{a="\\\\d\\"é"} unless histogram_quantile(0.9, rate(h_bucket[1m]))',
    ],
)
def test_every_selector_requires_the_tenant_and_keeps_its_own_matchers(query: str) -> None:
    scoped = scope_to_tenant(query, TENANT)
    before, after = _selectors(query), _selectors(scoped)
    assert len(before) == len(after) > 0
    for old, new in zip(before, after, strict=True):
        assert new.name == old.name and new.offset == old.offset
        pairs = {(m.name, m.value) for m in new.matchers.matchers}
        assert ("tenant_id", TENANT) in pairs
        assert {(m.name, m.value) for m in old.matchers.matchers} <= pairs


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("sum(", "not a valid PromQL"),
        ('up{a="1" or b="2"}', "'or' between matchers"),
        ("info(up)", "info()"),
    ],
)
def test_what_cannot_be_scoped_is_refused_on_query(query: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason) as refused:
        scope_to_tenant(query, "t")
    assert refused.value.fields[0].qualified() == "query.query"


def test_series_match_must_be_a_selector() -> None:
    assert 'tenant_id="t"' in selector_matchers("up", "t")
    with pytest.raises(InvalidInput) as refused:
        selector_matchers("sum(up)", "t")
    assert refused.value.fields[0].qualified() == "query.match[]"
