"""The evidence report of a run in JSON, CSV or HTML: each check with its status, when it looked,
what it looked at and the values found, and the framework controls it backs."""

from __future__ import annotations

import csv
import html
import io
import json
from typing import Any

from novacron.compliance.catalogue import BY_ID, CONTROLS, FRAMEWORKS, controls_of
from novacron.db.models import ComplianceResult, ComplianceRun

FORMATS = {"json": "application/json", "csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8"}


def as_dict(run: ComplianceRun, results: list[ComplianceResult]) -> dict[str, Any]:
    """The report's content: the run, its checks with evidence, and each control's status."""
    status = {r.check_id: r.status for r in results}
    controls = []
    for c in CONTROLS:
        states = [status.get(i, "not_run") for i in c.checks]
        verdict = "fail" if "fail" in states else "pass" if "pass" in states else "not_applicable"
        controls.append(
            {
                "framework": c.framework,
                "control": c.id,
                "title": c.title,
                "checks": list(c.checks),
                "status": verdict,
            }
        )
    return {
        "run": {
            "id": run.id,
            "scope": "platform" if run.tenant_id is None else "tenant",
            "tenant_id": run.tenant_id,
            "trigger": run.trigger,
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat(),
            "passed": run.passed,
            "failed": run.failed,
            "not_applicable": run.not_applicable,
        },
        "checks": [
            {
                "check": r.check_id,
                "title": BY_ID[r.check_id].title if r.check_id in BY_ID else r.check_id,
                "status": r.status,
                "summary": r.summary,
                "checked_at": r.checked_at.isoformat(),
                "controls": [f"{c.framework} {c.id}" for c in controls_of(r.check_id)],
                "evidence": r.evidence,
            }
            for r in results
        ],
        "controls": controls,
    }


def render(run: ComplianceRun, results: list[ComplianceResult], fmt: str) -> str:
    """The report as text in ``fmt`` (json, csv or html)."""
    data = as_dict(run, results)
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=False)
    if fmt == "csv":
        return _csv(data)
    return _html(data)


def _csv(data: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        ["run_id", "scope", "tenant_id", "check", "status", "checked_at", "controls", "summary", "evidence"]
    )
    run = data["run"]
    for c in data["checks"]:
        w.writerow(
            [
                run["id"],
                run["scope"],
                run["tenant_id"] or "",
                c["check"],
                c["status"],
                c["checked_at"],
                "; ".join(c["controls"]),
                c["summary"],
                json.dumps(c["evidence"], sort_keys=True),
            ]
        )
    return buf.getvalue()


def _html(data: dict[str, Any]) -> str:
    e = html.escape
    run = data["run"]
    who = "the platform" if run["tenant_id"] is None else f"tenant {run['tenant_id']}"
    rows = "".join(
        f"<tr class='{e(c['status'])}'><td>{e(c['title'])}<br><code>{e(c['check'])}</code></td>"
        f"<td>{e(c['status'])}</td><td>{e(c['summary'])}</td><td>{e(', '.join(c['controls']))}</td>"
        f"<td>{e(c['checked_at'])}</td><td><pre>{e(json.dumps(c['evidence'], indent=1))}</pre></td></tr>"
        for c in data["checks"]
    )
    controls = "".join(
        f"<tr class='{e(c['status'])}'><td>{e(c['framework'])}</td><td>{e(c['control'])}</td>"
        f"<td>{e(c['title'])}</td><td>{e(c['status'])}</td><td>{e(', '.join(c['checks']))}</td></tr>"
        for fw in FRAMEWORKS
        for c in data["controls"]
        if c["framework"] == fw
    )
    style = (
        "body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px;"
        "vertical-align:top}.fail td{background:#fde8e8}.pass td{background:#e8f6e8}"
        "pre{font-size:11px;margin:0}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>NovaCron compliance evidence</title>"
        f"<style>{style}</style></head><body><h1>Compliance evidence: {e(who)}</h1>"
        f"<p>Run {e(run['id'])} ({e(run['trigger'])}), {e(run['started_at'])} to {e(run['finished_at'])}: "
        f"{run['passed']} passed, {run['failed']} failed, {run['not_applicable']} not applicable.</p>"
        "<h2>Checks</h2><table><tr><th>Check</th><th>Status</th><th>Summary</th><th>Controls</th>"
        "<th>Checked at</th>"
        f"<th>Evidence</th></tr>{rows}</table>"
        "<h2>Controls</h2><table><tr><th>Framework</th><th>Control</th><th>Title</th><th>Status</th>"
        "<th>Checks</th></tr>"
        f"{controls}</table></body></html>"
    )
