"""Alert rules rendered for vmalert and Alertmanager: tenancy in every group and route, kinds'
PromQL, labels the platform owns refused, and the webhook signature."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from novacron.db.base import Database
from novacron.db.models import AlertRule, Tenant
from novacron.errors import InvalidInput
from novacron.monitoring.alerting.amconfig import RoutedReceiver, render_config
from novacron.monitoring.alerting.engines import _rendered_rules
from novacron.monitoring.alerting.notify import sign
from novacron.monitoring.alerting.rules import (
    RenderedRule,
    RuleSpec,
    build_expr,
    check_labels,
    render_rule_file,
)


def test_each_kind_builds_its_promql_with_the_tenant_matcher() -> None:
    cpu = RuleSpec(
        "c",
        "threshold",
        metric="novacron_vm_cpu_seconds_total",
        function="rate",
        window="1m",
        op=">",
        value=0.9,
        matchers={"vm_id": 'a"b'},
    )
    assert build_expr(cpu, "t1") == (
        'rate(novacron_vm_cpu_seconds_total{tenant_id="t1",vm_id="a\\"b"}[1m]) > 0.9'
    )
    absent = RuleSpec("a", "absence", metric="up", window="5m")
    assert build_expr(absent, None) == "absent_over_time(up{}[5m])"
    anomaly = RuleSpec("n", "anomaly", metric="novacron_vm_cpu_seconds_total")
    scored = 'novacron_anomaly_score{metric="novacron_vm_cpu_seconds_total",tenant_id="t1"}'
    assert build_expr(anomaly, "t1") == f"max_over_time({scored}[1m]) > 0.8"
    # a tenant cannot point its selector at another tenant: the platform's matcher wins
    sneaky = RuleSpec("s", "rate_of_change", metric="m", value=1, matchers={"tenant_id": "t2"})
    assert 'tenant_id="t1"' in build_expr(sneaky, "t1") and "t2" not in build_expr(sneaky, "t1")
    with pytest.raises(InvalidInput) as bad:
        build_expr(RuleSpec("b", "threshold", metric="1bad", value=1), "t1")
    assert bad.value.fields[0].field == "metric"
    with pytest.raises(InvalidInput) as bad:  # the comparison is written into the expression
        build_expr(RuleSpec("o", "threshold", metric="up", op="> 0 or vector(1) >", value=1), "t1")
    assert bad.value.fields[0].field == "op"


def test_platform_labels_and_tenant_template_functions_are_refused() -> None:
    for labels, field in (
        ({"tenant_id": "x"}, "labels.tenant_id"),
        ({"novacron_scope": "x"}, "labels.novacron_scope"),
    ):
        with pytest.raises(InvalidInput) as bad:
            check_labels(labels, {}, tenant=True)
        assert bad.value.fields[0].field == field
    check_labels({}, {"s": "at {{ $value }} on {{ $labels.vm_id }}"}, tenant=True)
    with pytest.raises(InvalidInput):
        check_labels({}, {"s": '{{ query "up" }}'}, tenant=True)
    with pytest.raises(InvalidInput) as bad:  # vmalert expands label values too
        check_labels({"team": '{{ query "up" }}'}, {}, tenant=True)
    assert bad.value.fields[0].field == "labels.team"
    check_labels({}, {"s": '{{ query "up" }}'}, tenant=False)  # administrators' rules read everything


def test_a_tenant_group_is_scoped_by_extra_label_and_its_routes_by_tenant() -> None:
    rule = RenderedRule("alr-1", "t1", "cpu", "up > 0", 2, "warning", {"team": "a"}, {}, ["arc-2", "arc-1"])
    platform = RenderedRule("alr-2", None, "disk", "up > 0", 0, "critical", {}, {}, [])
    groups = json.loads(render_rule_file([rule, platform], 1.0))["groups"]
    assert [g["name"] for g in groups] == ["platform", "tenant-t1"]
    assert "params" not in groups[0] and groups[0]["rules"][0]["labels"]["novacron_scope"] == "platform"
    assert groups[1]["params"] == {"extra_label": ["tenant_id=t1"]}
    labels = groups[1]["rules"][0]["labels"]
    assert labels["tenant_id"] == "t1" and labels["novacron_receivers"] == ",arc-1,arc-2,"
    assert groups[1]["rules"][0]["for"] == "2s"
    receiver = RoutedReceiver(
        "arc-1", "t1", [], 0, 1, 60, [{"name": "severity", "op": "=", "value": "critical"}]
    )
    config = json.loads(render_config([receiver], "http://127.0.0.1:5", "secret"))
    state, route = config["route"]["routes"]
    assert state["receiver"] == "state" and state["group_by"] == ["..."]
    assert route["matchers"] == [
        'novacron_receivers=~".*,arc\\\\-1,.*"',
        'tenant_id="t1"',
        'novacron_scope="tenant"',
        'severity="critical"',
    ]
    hook = config["receivers"][1]["webhook_configs"][0]
    assert (
        hook["url"] == "http://127.0.0.1:5/notify/arc-1"
        and hook["http_config"]["authorization"]["credentials"] == "secret"
    )


def test_the_webhook_signature_is_an_hmac_of_the_timestamp_and_body() -> None:
    body = b'{"status":"firing"}'
    mac = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k" * 16, 1700000000, body) == f"t=1700000000,v1={mac}"


def test_a_tenants_burn_rate_rule_is_evaluated_only_on_a_store_that_scopes_it(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/t.db")
    db.create_all()
    try:
        with db.session() as s:
            s.add(Tenant(id="t1", name="one"))
            s.flush()
            for rule_id, tenant_id, kind in (
                ("own", "t1", "burn_rate"),
                ("kind", "t1", "threshold"),
                ("admin", None, "burn_rate"),
            ):
                s.add(
                    AlertRule(id=rule_id, tenant_id=tenant_id, name=rule_id, kind=kind, expr="vector(1) > 0")
                )
        assert {r.id for r in _rendered_rules(db, "victoriametrics")} == {"own", "kind", "admin"}
        # extra_label is all that scopes a tenant's whole expression, and Prometheus ignores it
        assert {r.id for r in _rendered_rules(db, "prometheus")} == {"kind", "admin"}
    finally:
        db.engine.dispose()
