"""Synthetic probes into tenant networks, their last results, and the SLOs built on them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, UTCDateTime, Versioned


class Probe(Timestamped, Versioned, Base):
    """A check run from the platform, inside the tenant network, at one of the tenant's ports."""

    __tablename__ = "probes"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    #: icmp, tcp, http, https
    kind: Mapped[str] = mapped_column(String(8))
    #: the VM port probed (its network says where the probe runs); the probe goes with the port
    port_id: Mapped[str] = mapped_column(ForeignKey("ports.id", ondelete="CASCADE"), index=True)
    vm_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: one of the port's fixed IPs, chosen at create
    address: Mapped[str] = mapped_column(String(64))
    #: TCP port (tcp/http/https); None for icmp
    target_port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    path: Mapped[str] = mapped_column(String(256), default="/")
    expected_status: Mapped[int] = mapped_column(Integer, default=200)
    body_contains: Mapped[str | None] = mapped_column(String(256), nullable=True)
    #: https: verify the certificate (chain and name); False checks reachability and the answer only
    tls_verify: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: https: the name the certificate must be for (sent as SNI and Host); default: the address
    tls_server_name: Mapped[str | None] = mapped_column(String(253), nullable=True)
    #: https: the CA certificates (PEM) trusted instead of the system's
    tls_ca_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    interval_s: Mapped[int] = mapped_column(Integer, default=10)
    timeout_s: Mapped[float] = mapped_column(Float, default=2.0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)


class ProbeResult(Base):
    """A probe's last result (its history is in the metrics store); kept apart from the probe so a
    result every few seconds does not move the probe's version and ETag."""

    __tablename__ = "probe_results"
    probe_id: Mapped[str] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"), primary_key=True)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    success: Mapped[bool] = mapped_column(Boolean)
    duration_s: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(String(512), nullable=True)
    #: the network namespace and host it ran from
    vantage: Mapped[str] = mapped_column(String(160), default="")


class SLO(Timestamped, Versioned, Base):
    """A service level objective over a probe: its success ratio, or its share of fast successes."""

    __tablename__ = "slos"
    __table_args__ = (UniqueConstraint("project_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    probe_id: Mapped[str] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"), index=True)
    #: success (probe succeeded) or latency (succeeded within ``latency_threshold_s``)
    indicator: Mapped[str] = mapped_column(String(16))
    latency_threshold_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    #: the good fraction aimed at, e.g. 0.999
    target: Mapped[float] = mapped_column(Float)
    window_days: Mapped[int] = mapped_column(Integer, default=30)
    #: the burn-rate rules made for it in the alerting engine (``alert_rules`` ids), deleted with it
    alert_rule_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
