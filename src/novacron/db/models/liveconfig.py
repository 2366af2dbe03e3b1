"""Live configuration: each version of the operator-set settings document, never updated."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, UTCDateTime, utcnow


class ConfigVersion(Base):
    """One version of the live settings (``configsvc``): the whole overlay document as it stood
    after a change, who made it and why. The newest row is in force on every replica; a rollback
    is a new row equal to an old one, so history is only ever appended to."""

    __tablename__ = "config_versions"
    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    #: {section: {key: value}}: only what an operator set; everything else is the env default
    document: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: the user who made the change (their name, kept when the user is deleted)
    author: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text, default="")
    #: the version this one restored (a rollback), else None
    rollback_of: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
