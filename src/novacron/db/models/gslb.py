"""Global load balancing: tenants' global names with their sites, and the platform's CIDR → region table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, Timestamped, Versioned


class GslbName(Timestamped, Versioned, Base):
    """A DNS name under the platform's GSLB zone, owned by one tenant, answered from its sites."""

    __tablename__ = "gslb_names"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    #: absolute, lower case, ending in a dot; a name has one owner on the platform
    name: Mapped[str] = mapped_column(String(253), unique=True)
    ttl: Mapped[int] = mapped_column(Integer)
    #: [{"address", "port", "region", "weight", "monitor_path", "loadbalancer_id"}] in the order given;
    #: ``loadbalancer_id`` is kept as given (no foreign key: load balancers may live elsewhere)
    sites: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class GslbRegion(Timestamped, Versioned, Base):
    """Clients in ``cidr`` (by address or EDNS client subnet) are nearest to ``region``."""

    __tablename__ = "gslb_regions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    cidr: Mapped[str] = mapped_column(String(64), unique=True)
    region: Mapped[str] = mapped_column(String(32), index=True)
