"""What a VM's guest says about itself (its qemu-guest-agent), and the addresses its NICs leased."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, text
from sqlalchemy.orm import Mapped, mapped_column

from novacron.db.base import Base, UTCDateTime


class VMGuestInfo(Base):
    """One row per VM that has told anything: the agent's part (``agent_at`` set while a guest
    agent answers) and the DHCP part (``lease_ips``); ``ips`` and ``source`` are the summary the
    VM list shows, kept with each write so the list reads them in its one query."""

    __tablename__ = "vm_guest_info"
    vm_id: Mapped[str] = mapped_column(ForeignKey("vms.id", ondelete="CASCADE"), primary_key=True)
    #: when a guest agent last answered (None: none answers now)
    agent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    hostname: Mapped[str] = mapped_column(String(255), default="")
    #: pretty-name, name, version, kernel-release, machine (as the agent names them)
    os: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default=text("'{}'"))
    #: [{name, mac, ips: ["addr/prefix"]}], loopback left out
    interfaces: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    #: [{mountpoint, type, total_bytes, used_bytes}]
    filesystems: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    #: IPv4 addresses the network's DHCP server leased to the VM's NICs
    lease_ips: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    lease_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: the summary: the agent's addresses when it answers, else the leased ones, else the ports'
    ips: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    #: agent | lease | port | "" (nothing known)
    source: Mapped[str] = mapped_column(String(8), default="")
