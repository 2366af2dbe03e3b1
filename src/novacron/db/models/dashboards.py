"""Custom dashboards: a user's own panels of tenant-scoped PromQL queries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, Versioned


class Dashboard(Timestamped, Versioned, Base):
    """A named set of panels saved by one user, read only by that user; its queries run in the
    user's tenant scope (an administrator's, without a tenant, over every series)."""

    __tablename__ = "dashboards"
    __table_args__ = (UniqueConstraint("user_id", "name"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: the owner's tenant (None for a platform administrator): whose series the panels read
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    #: the owner: the only caller who sees it
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    #: [{"title", "query", "unit", "chart"}], in display order
    panels: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
