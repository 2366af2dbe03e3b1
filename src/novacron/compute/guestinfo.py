"""Guest information: what a VM's guest says about itself, and where its addresses come from.

A host's agent sends, with its reports, what each running guest's qemu-guest-agent tells
(``agent/guestinfo.py``: addresses per NIC, hostname, OS, filesystems; ``{}`` once none answers)
and the leases of the DHCP servers it runs (MAC -> IPv4). Both land in ``vm_guest_info``, whose
``ips``/``source`` summary the VM list reads in its own query (an outer join, no query per row).
A host's first report of a running VM makes its row, the ports' fixed IPs its summary until the
guest's agent or a lease tells more.

An address's source, as the API and the dashboard show it: ``agent`` (the guest's agent says so),
``lease`` (the tenant network's dnsmasq leased it to the VM's NIC) or ``port`` (nothing answered
yet: the fixed IPs IPAM gave the VM's ports).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.db.base import utcnow
from novacron.db.models import IPAllocation, Port, VMGuestInfo


@dataclass(frozen=True)
class GuestView:
    """A VM's guest information as the API shows it."""

    ips: list[str] = field(default_factory=list)
    source: str = ""
    agent_at: datetime | None = None
    hostname: str = ""
    os: dict[str, Any] = field(default_factory=dict)
    interfaces: list[dict[str, Any]] = field(default_factory=list)
    filesystems: list[dict[str, Any]] = field(default_factory=list)
    lease_ips: list[str] = field(default_factory=list)


def _agent_ips(interfaces: Sequence[Mapping[str, Any]]) -> list[str]:
    """The guest's own addresses worth showing: IPv4 first, loopback and link-local left out."""
    found: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for nic in interfaces:
        for cidr in nic.get("ips") or []:
            try:
                addr = ipaddress.ip_address(str(cidr).split("/")[0])
            except ValueError:
                continue
            if not (addr.is_loopback or addr.is_link_local) and addr not in found:
                found.append(addr)
    return [str(a) for a in sorted(found, key=lambda a: (a.version, a))]


def _summarise(session: Session, rows: Sequence[VMGuestInfo]) -> None:
    """Each row's summary: the agent's addresses while one answers, else the leased ones, else its
    ports' fixed IPs (one query for the rows that need them), so the list never asks the ports."""
    for row in rows:
        if row.agent_at is not None:
            row.ips, row.source = _agent_ips(row.interfaces or []), "agent"
        elif row.lease_ips:
            row.ips, row.source = list(row.lease_ips), "lease"
        else:
            row.ips, row.source = [], ""
    bare = [row for row in rows if not row.ips]
    fixed = port_ips(session, [row.vm_id for row in bare])
    for row in bare:
        row.ips = fixed.get(row.vm_id, [])
        row.source = "port" if row.ips else ""


def _row(session: Session, vm_id: str) -> VMGuestInfo:
    row = session.get(VMGuestInfo, vm_id)
    if row is None:
        row = VMGuestInfo(
            vm_id=vm_id, hostname="", os={}, interfaces=[], filesystems=[], lease_ips=[], ips=[]
        )
        session.add(row)
    return row


def record_agent(session: Session, keep: set[str], answers: Mapping[str, Mapping[str, Any]]) -> None:
    """The answers of a host's guests' agents (only for VMs the host keeps: no host speaks for
    another's); an empty answer: no agent answers (now), the lease or the ports show instead. A
    host's first report of a VM makes its row, so the list reads every running VM's summary."""
    touched = []
    for vm_id, info in answers.items():
        if vm_id not in keep:
            continue
        known = session.get(VMGuestInfo, vm_id)
        if not info and known is not None and known.agent_at is None:
            continue  # still no agent: nothing changes
        row = known or _row(session, vm_id)
        if info:
            row.agent_at = utcnow()
            row.hostname = str(info.get("hostname") or "")[:255]
            row.os = dict(info.get("os") or {})
            row.interfaces = list(info.get("interfaces") or [])
            row.filesystems = list(info.get("filesystems") or [])
        else:
            row.agent_at, row.hostname, row.os, row.interfaces, row.filesystems = None, "", {}, [], []
        touched.append(row)
    _summarise(session, touched)


def record_leases(session: Session, leases: Mapping[str, str]) -> None:
    """A host's DHCP leases (MAC -> IPv4): each one that is a VM port's own MAC and fixed IP gives
    that VM its leased address. Leases only add: another host's DHCP server may hold the rest."""
    if not leases:
        return
    held = select(Port.vm_id, Port.mac, IPAllocation.ip).join(IPAllocation, IPAllocation.port_id == Port.id)
    by_vm: dict[str, list[str]] = {}
    for vm_id, mac, ip in session.execute(held.where(Port.mac.in_(list(leases)), Port.vm_id.is_not(None))):
        if vm_id is not None and leases.get(mac.lower()) == ip:
            by_vm.setdefault(vm_id, []).append(ip)
    touched = []
    for vm_id, ips in by_vm.items():
        row = _row(session, vm_id)
        if sorted(row.lease_ips or []) != sorted(ips):
            row.lease_ips, row.lease_at = sorted(ips), utcnow()
            touched.append(row)
    _summarise(session, touched)


def port_ips(session: Session, vm_ids: Sequence[str]) -> dict[str, list[str]]:
    """The fixed IPs of these VMs' ports, in NIC order (one query for them all)."""
    if not vm_ids:
        return {}
    stmt = (
        select(Port.vm_id, IPAllocation.ip)
        .join(IPAllocation, IPAllocation.port_id == Port.id)
        .where(Port.vm_id.in_(list(vm_ids)))
        .order_by(Port.vm_id, Port.position, IPAllocation.ip)
    )
    out: dict[str, list[str]] = {}
    for vm_id, ip in session.execute(stmt):
        out.setdefault(str(vm_id), []).append(ip)
    return out


def with_port_ips(session: Session, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """List rows (with the outer-joined ``ips``/``ip_source``) as dicts; the VMs no host reported
    yet (no row: building, or just started) get their ports' fixed IPs, in one query for the page
    (none when every VM of the page has its row, the usual case)."""
    # one zip per row over the keys read once (``Row._mapping`` per row was a tenth of a page's cost)
    keys = tuple(rows[0]._fields) if rows else ()
    out = [dict(zip(keys, r, strict=True)) for r in rows]
    missing = [r["id"] for r in out if r.get("ips") is None]
    fixed = port_ips(session, missing)
    for r in out:
        if r.get("ips") is None:
            r["ips"] = fixed.get(r["id"], [])
            r["ip_source"] = "port" if r["ips"] else ""
    return out


def view(session: Session, vm_id: str) -> GuestView:
    """One VM's guest information, with the port fallback for its addresses."""
    row = session.get(VMGuestInfo, vm_id)
    ips, source = (list(row.ips), row.source) if row is not None else ([], "")
    if not ips:
        ips = port_ips(session, [vm_id]).get(vm_id, [])
        source = "port" if ips else ""
    if row is None:
        return GuestView(ips=ips, source=source)
    return GuestView(
        ips=ips,
        source=source,
        agent_at=row.agent_at,
        hostname=row.hostname,
        os=dict(row.os or {}),
        interfaces=list(row.interfaces or []),
        filesystems=list(row.filesystems or []),
        lease_ips=list(row.lease_ips or []),
    )
