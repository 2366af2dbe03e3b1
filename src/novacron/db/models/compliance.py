"""Compliance check runs and their results: what each check looked at, when, and what it found."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, UTCDateTime


class ComplianceRun(Base):
    """One run of the catalogue's checks, for one tenant or for the whole platform (tenant None)."""

    __tablename__ = "compliance_runs"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: None: the platform (every tenant's state, and the platform's own configuration)
    tenant_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    #: "schedule" (the leader's periodic run) or the username of who asked
    trigger: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    passed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    not_applicable: Mapped[int] = mapped_column(Integer, default=0)


class ComplianceResult(Base):
    """One check's outcome in a run, with its evidence."""

    __tablename__ = "compliance_results"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("compliance_runs.id", ondelete="CASCADE"), index=True)
    check_id: Mapped[str] = mapped_column(String(40))
    #: pass, fail, not_applicable
    status: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text)
    #: what was looked at (tables, files, settings) and the values found
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    checked_at: Mapped[datetime] = mapped_column(UTCDateTime)
