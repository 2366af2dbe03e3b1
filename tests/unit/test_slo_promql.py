"""The PromQL an SLO generates: its indicator, burn rates and the SRE workbook's alert conditions."""

from __future__ import annotations

from novacron.monitoring.slo.promql import Indicator, budget, burn_rate, burn_rate_rules
from novacron.monitoring.slo.report import Incident, _failing_periods, month_bounds

SEL = 'novacron_probe_success{tenant_id="t1",probe_id="prb-1"}'


def test_success_indicator_is_the_share_of_successful_runs() -> None:
    ind = Indicator("t1", "prb-1")
    assert ind.ratio("30d") == f"avg_over_time({SEL}[30d])"
    assert burn_rate(ind, 0.999, "1h") == f"(1 - avg_over_time({SEL}[1h])) / 0.001"


def test_latency_indicator_counts_only_fast_successes_one_point_per_run() -> None:
    ind = Indicator("t1", "prb-1", "latency", 0.25, interval_s=5)
    dur = 'novacron_probe_duration_seconds{tenant_id="t1",probe_id="prb-1"}'
    assert ind.good() == f"({dur} <= bool 0.25) * {SEL}"
    assert ind.ratio("1h") == f"avg_over_time((({dur} <= bool 0.25) * {SEL})[1h:5s])"


def test_selectors_quote_ids_so_a_name_cannot_escape_its_matcher() -> None:
    ind = Indicator('t"} or up{x="', "p")
    assert 'tenant_id="t\\"} or up{x=\\""' in ind.selector("m")


def test_burn_rate_rules_are_the_workbook_pairs() -> None:
    rules = burn_rate_rules("slo-web", Indicator("t1", "prb-1"), 0.999)
    assert [(r.name, r.severity) for r in rules] == [
        ("slo-web-page-fast", "critical"),
        ("slo-web-page-slow", "critical"),
        ("slo-web-ticket", "warning"),
    ]
    fast, slow, ticket = (r.expr for r in rules)
    assert fast == (
        f"((1 - avg_over_time({SEL}[1h])) / 0.001 > 14.4) and ((1 - avg_over_time({SEL}[5m])) / 0.001 > 14.4)"
    )
    assert "[6h])) / 0.001 > 6)" in slow and "[30m])) / 0.001 > 6)" in slow
    assert "[3d])) / 0.001 > 1)" in ticket and "[6h])) / 0.001 > 1)" in ticket


def test_budget_is_one_minus_target() -> None:
    assert budget(0.999) == 0.001
    assert budget(0.95) == 0.05


def test_month_bounds_and_failure_periods() -> None:
    start, end = month_bounds("2026-12")
    assert end - start == 31 * 86400
    assert month_bounds("2026-02")[1] - month_bounds("2026-02")[0] == 28 * 86400
    points = [(10.0, 1.0), (20.0, 0.0), (30.0, 0.0), (40.0, 1.0), (50.0, 0.0)]
    assert _failing_periods(points, 10) == [Incident(10.0, 30.0), Incident(40.0, 50.0)]


def test_probe_run_requests_travel_as_json_and_a_missing_namespace_measures_nothing() -> None:
    import json

    from novacron.agent.protocol import ProbeCheck, ProbeRun, encode, parse
    from novacron.monitoring.slo.checks import Check, run_many

    request = ProbeRun((ProbeCheck("nc0000-dabc", Check("http", "10.0.0.5", 8080, "/h", 204, "ok", 1.5)),))
    assert parse("probe_run", json.loads(json.dumps(encode(request)))) == request
    (outcome,) = run_many([("nc-no-such-namespace", Check("icmp", "10.0.0.5"))])
    assert not outcome.success and not outcome.measured and "no namespace" in (outcome.error or "")


def test_long_latency_windows_are_sampled_within_the_stores_subquery_limit() -> None:
    ind = Indicator("t1", "prb-1", "latency", 0.25, interval_s=10)
    assert ind.step("1h") == 10
    assert ind.step("30d") == 104  # 2,592,000 s / 25,000 points, rounded up
    assert ind.ratio("30d").endswith("[30d:104s])")


def test_a_reports_latency_subquery_counts_its_points_over_the_whole_month() -> None:
    ind = Indicator("t1", "prb-1", "latency", 0.25, interval_s=10)
    assert ind.worst("260s").endswith("[260s:10s])")
    assert ind.worst("260s", span="2592000s").endswith("[260s:104s])")
