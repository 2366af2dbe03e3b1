"""The live settings: which ones there are, their bounds, and the ``Settings`` field each overlays.

A document is ``{section: {key: value}}`` holding only what an operator set; a key it does not
hold keeps the value the process was started with (its ``NOVACRON_*`` environment variable or
built-in default). Everything else in ``config.Settings`` (addresses, paths, the database, TLS,
engines) must be known at start and stays in the environment.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from novacron.config import Settings

DAY = 86_400.0


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SchedulerSection(_Section):
    placement_strategy: Literal["spread", "pack"] | None = Field(
        default=None, description="where new VMs go: spread (most free RAM first) or pack (fill hosts first)"
    )
    rebalance_threshold: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="a rebalance moves a VM only to a host this much less loaded",
    )
    rebalance_cooldown_s: float | None = Field(
        default=None,
        ge=0.0,
        le=7 * DAY,
        description="a VM moved this recently is not moved again by a rebalance",
    )


class LoginSection(_Section):
    account_failures: int | None = Field(
        default=None, ge=1, le=1000, description="failed logins of one account before its backoff starts"
    )
    source_failures: int | None = Field(
        default=None, ge=1, le=100_000, description="failed logins from one address before its backoff starts"
    )
    backoff_s: float | None = Field(
        default=None, ge=0.01, le=3600.0, description="the first wait, doubled per failure"
    )
    backoff_max_s: float | None = Field(default=None, ge=1.0, le=DAY, description="the longest wait")
    reset_s: float | None = Field(
        default=None, ge=1.0, le=30 * DAY, description="failures older than this are forgotten"
    )


class TokensSection(_Section):
    access_token_ttl_s: int | None = Field(
        default=None, ge=60, le=DAY, description="lifetime of an access token issued from now on"
    )


class WebhooksSection(_Section):
    retry_base_s: float | None = Field(
        default=None, ge=0.1, le=3600.0, description="the first retry's delay (doubled per attempt)"
    )
    max_attempts: int | None = Field(
        default=None, ge=1, le=100, description="attempts before a delivery fails"
    )
    pause_after: int | None = Field(
        default=None, ge=1, le=10_000, description="failed attempts in a row that pause a subscription"
    )


class IntervalsSection(_Section):
    host_down_after_s: float | None = Field(
        default=None, ge=5.0, le=3600.0, description="a host silent this long is marked down (HA)"
    )
    metering_interval_s: float | None = Field(
        default=None, ge=1.0, le=DAY, description="how often usage is metered into the ledger"
    )
    quota_reconcile_interval_s: float | None = Field(
        default=None, ge=1.0, le=DAY, description="how often quota counters are compared with what exists"
    )
    autoscaling_evaluate_s: float | None = Field(
        default=None, ge=1.0, le=DAY, description="how often scaling policies are evaluated"
    )


class RetentionSection(_Section):
    trace_hours: float | None = Field(
        default=None, ge=1.0, le=366 * 24.0, description="the local trace store keeps spans this long"
    )
    trace_max_spans: int | None = Field(
        default=None, ge=1000, le=10_000_000, description="and at most this many, the oldest dropped first"
    )


class FeaturesSection(_Section):
    anomaly_detection: bool | None = Field(
        default=None, description="score VM series for anomalies (vm.anomaly events, anomaly alerts)"
    )


class ThreatsSection(_Section):
    stuffing_accounts: int | None = Field(
        default=None,
        ge=2,
        le=100_000,
        description="distinct accounts failed from one address: credential stuffing",
    )
    enumeration_404s: int | None = Field(
        default=None, ge=2, le=1_000_000, description="404s on resources by id to one address: enumeration"
    )
    window_s: float | None = Field(default=None, ge=1.0, le=DAY, description="the detection window")
    block_s: float | None = Field(
        default=None, ge=1.0, le=30 * DAY, description="how long a detection blocks"
    )
    delete_burst: int | None = Field(
        default=None, ge=2, le=1_000_000, description="DELETEs by one principal reported as a burst"
    )


class LiveDocument(_Section):
    """The live settings an operator may change; ``null`` (or absent) keeps the start-up value."""

    scheduler: SchedulerSection = Field(default_factory=SchedulerSection)
    login: LoginSection = Field(default_factory=LoginSection)
    tokens: TokensSection = Field(default_factory=TokensSection)
    webhooks: WebhooksSection = Field(default_factory=WebhooksSection)
    intervals: IntervalsSection = Field(default_factory=IntervalsSection)
    retention: RetentionSection = Field(default_factory=RetentionSection)
    features: FeaturesSection = Field(default_factory=FeaturesSection)
    threats: ThreatsSection = Field(default_factory=ThreatsSection)


#: (section, key) -> the ``Settings`` field it overlays
FIELDS: dict[tuple[str, str], str] = {
    ("scheduler", "placement_strategy"): "placement_strategy",
    ("scheduler", "rebalance_threshold"): "rebalance_threshold",
    ("scheduler", "rebalance_cooldown_s"): "rebalance_cooldown_s",
    ("login", "account_failures"): "login_account_failures",
    ("login", "source_failures"): "login_source_failures",
    ("login", "backoff_s"): "login_backoff_s",
    ("login", "backoff_max_s"): "login_backoff_max_s",
    ("login", "reset_s"): "login_reset_s",
    ("tokens", "access_token_ttl_s"): "access_token_ttl_s",
    ("webhooks", "retry_base_s"): "webhook_retry_base_s",
    ("webhooks", "max_attempts"): "webhook_max_attempts",
    ("webhooks", "pause_after"): "webhook_pause_after",
    ("intervals", "host_down_after_s"): "host_down_after_s",
    ("intervals", "metering_interval_s"): "metering_interval_s",
    ("intervals", "quota_reconcile_interval_s"): "quota_reconcile_interval_s",
    ("intervals", "autoscaling_evaluate_s"): "autoscaling_evaluate_s",
    ("retention", "trace_hours"): "trace_retention_hours",
    ("retention", "trace_max_spans"): "trace_max_spans",
    ("features", "anomaly_detection"): "anomaly_detection",
    ("threats", "stuffing_accounts"): "threat_stuffing_accounts",
    ("threats", "enumeration_404s"): "threat_enumeration_404s",
    ("threats", "window_s"): "threat_window_s",
    ("threats", "block_s"): "threat_block_s",
    ("threats", "delete_burst"): "threat_delete_burst",
}


def sections() -> dict[str, type[_Section]]:
    return {name: info.annotation for name, info in LiveDocument.model_fields.items()}  # type: ignore[misc]


def overlay(base: Settings, document: dict[str, Any]) -> Settings:
    """``base`` with the document's values in place of the start-up ones."""
    changes = {
        FIELDS[(section, key)]: value
        for section, keys in document.items()
        for key, value in keys.items()
        if value is not None and (section, key) in FIELDS
    }
    return replace(base, **changes) if changes else base


def effective(base: Settings, document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every live setting's value in force, by section and key."""
    settings = overlay(base, document)
    out: dict[str, dict[str, Any]] = {}
    for (section, key), name in FIELDS.items():
        out.setdefault(section, {})[key] = getattr(settings, name)
    return out


def describe() -> list[dict[str, Any]]:
    """Each live setting: its key, type, bounds and description (the dashboard's form)."""
    rows = []
    for section, model in sections().items():
        schema = model.model_json_schema()
        for key, prop in schema["properties"].items():
            choice: dict[str, Any] = next(
                (o for o in prop.get("anyOf", [prop]) if o.get("type") != "null"), {}
            )
            rows.append(
                {
                    "key": f"{section}.{key}",
                    "type": choice.get("type", "string"),
                    "enum": choice.get("enum"),
                    "minimum": choice.get("minimum"),
                    "maximum": choice.get("maximum"),
                    "description": prop.get("description", ""),
                }
            )
    return rows
