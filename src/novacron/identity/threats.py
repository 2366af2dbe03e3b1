"""Threat detection from the API's own traffic, and the temporary blocks it sets.

``api/threats.py`` feeds every refused login (401 on ``POST /v1/tokens``) and every 404 on a
resource-by-id route to a ``ThreatDetector``, keyed by the client address (an IPv6 /64, spelled as
the login throttle spells it). Each source keeps a sliding window of ``threat_window_s`` seconds:

- **credential stuffing**: failed logins for ``threat_stuffing_accounts`` distinct accounts. The
  login throttle already slows one account or one address; stuffing spreads over many accounts
  with few tries each, which the per-account count never sees;
- **enumeration**: ``threat_enumeration_404s`` answers "no such resource" to one source.

A detection blocks the source for ``threat_block_s`` seconds: a ``security_blocks`` row, so every
replica refuses it (each re-reads a source's block at most every ``_RECHECK_S``), and a
``security.<kind>`` event (platform level: administrators) whose data explains it: the source,
the count, the window, a sample of the accounts or paths, and the block with its expiry. An
administrator lifts a block early (``SecurityService.lift``); addresses in ``threat_allowlist``
(loopback by default: a local reverse proxy not declared trusted would make every client look
like it, and the node's own tools) are never counted nor blocked. The windows are each process's
own: with several replicas behind a balancer a source is detected once one replica has seen
enough of it.
"""

from __future__ import annotations

import functools
import ipaddress
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from novacron import events
from novacron.config import Settings
from novacron.db.base import Database, new_id, utcnow
from novacron.db.models import SecurityBlock
from novacron.errors import Forbidden, NotFound
from novacron.identity.clientaddr import Network, parse_address, parse_networks
from novacron.identity.throttle import source_key
from novacron.service import Service

#: how long a replica believes what it read about a source's block (another may have set or lifted it)
_RECHECK_S = 2.0
_MAX_SOURCES = 10_000
_SAMPLE = 5
KINDS = ("credential_stuffing", "enumeration", "token_misuse", "destructive_burst")


@functools.lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(cidrs)


@dataclass
class _Window:
    """What one source did lately: (monotonic time, item) pairs, oldest first."""

    seen: deque[tuple[float, str]] = field(default_factory=deque)

    def add(self, now: float, item: str, window_s: float) -> None:
        self.seen.append((now, item))
        while self.seen and self.seen[0][0] < now - window_s:
            self.seen.popleft()


@dataclass(frozen=True)
class Detection:
    kind: str
    source: str
    block_id: str
    until: datetime


@dataclass(frozen=True)
class Finding:
    """Something reported without a block: its kind, the source, what the event's data explains."""

    kind: str
    source: str
    data: dict[str, Any]


def _network_of(address: str) -> str:
    addr = parse_address(address)
    if addr is None:
        return address[:64]
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def normalise(address: str) -> str:
    """The source a block names: the address, or its IPv6 /64 (one host usually holds it whole)."""
    key = source_key(address)
    return key.split(":", 1)[1] if key else address


class ThreatDetector:
    def __init__(self, db: Database, settings: Callable[[], Settings]) -> None:
        self.db = db
        self._settings = settings
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], _Window] = {}
        #: source -> (blocked until or None, monotonic time the database said so)
        self._blocks: dict[str, tuple[datetime | None, float]] = {}
        #: token id -> (network it was last used from, monotonic time); tokens reported lately
        self._tokens: dict[str, tuple[str, float]] = {}
        self._reported: dict[str, float] = {}
        #: detections by kind, for ``novacron_security_detections_total``
        self.detections: dict[str, int] = dict.fromkeys(KINDS, 0)

    def allowed(self, address: str) -> bool:
        """In the allow-list, or not an address at all: never counted, never blocked."""
        addr = parse_address(address)
        nets = _networks(self._settings().threat_allowlist)
        return addr is None or any(addr.version == n.version and addr in n for n in nets)

    # -- blocks --------------------------------------------------------------------------------

    def cached_block(self, address: str) -> tuple[bool, datetime | None]:
        """(known, blocked until): known is False when the database must be asked (``blocked``)."""
        until, seen = self._blocks.get(normalise(address), (None, -1e9))
        if time.monotonic() - seen > _RECHECK_S:
            return False, None
        return True, until if until is not None and until > utcnow() else None

    def blocked(self, address: str) -> datetime | None:
        """Until when ``address`` is blocked (None: it is not); reads the database."""
        source = normalise(address)
        with self.db.read_session() as session:
            until = session.execute(
                select(SecurityBlock.expires_at)
                .where(
                    SecurityBlock.source == source,
                    SecurityBlock.lifted_at.is_(None),
                    SecurityBlock.expires_at > utcnow(),
                )
                .order_by(SecurityBlock.expires_at.desc())
                .limit(1)
            ).scalar_one_or_none()
        self._remember(source, until)
        return until

    def _remember(self, source: str, until: datetime | None) -> None:
        with self._lock:
            if len(self._blocks) >= _MAX_SOURCES:
                self._blocks.clear()
            self._blocks[source] = (until, time.monotonic())

    def forget(self, source: str) -> None:
        """A block of ``source`` was lifted here: believe it at once."""
        with self._lock:
            self._blocks.pop(source, None)

    # -- detection -----------------------------------------------------------------------------

    def failed_login(self, address: str, username: str) -> Detection | None:
        settings = self._settings()
        return self._observe(
            "credential_stuffing", address, username.strip().lower()[:64], settings.threat_stuffing_accounts
        )

    def not_found(self, address: str, path: str) -> Detection | None:
        return self._observe("enumeration", address, path[:128], self._settings().threat_enumeration_404s)

    def _observe(self, kind: str, address: str, item: str, threshold: int) -> Detection | None:
        if self.allowed(address):
            return None
        source = normalise(address)
        window_s = self._settings().threat_window_s
        with self._lock:
            if len(self._windows) >= _MAX_SOURCES:
                self._windows.clear()  # a flood of sources: forget, rather than grow without end
            window = self._windows.setdefault((kind, source), _Window())
            window.add(time.monotonic(), item, window_s)
            items = [i for _, i in window.seen]
            count = len(set(items)) if kind == "credential_stuffing" else len(items)
            if count < threshold:
                return None
            del self._windows[(kind, source)]  # blocked now: its next detection starts afresh
        sample = list(dict.fromkeys(items))[:_SAMPLE]
        return self._block(kind, source, count, window_s, sample)

    # -- reported, not blocked ------------------------------------------------------------------

    def token_used(self, address: str, token_id: str) -> Finding | None:
        """A token seen from a network (IPv4 /24, IPv6 /64) other than the one it was used from
        within the window: a copied token, most likely. Reported once per token and window."""
        if self.allowed(address):
            return None
        net = _network_of(address)
        now = time.monotonic()
        window_s = self._settings().threat_window_s
        with self._lock:
            last = self._tokens.get(token_id)
            if len(self._tokens) >= _MAX_SOURCES:
                self._tokens.clear()
            self._tokens[token_id] = (net, now)
            if last is None or last[0] == net or now - last[1] > window_s or token_id in self._reported:
                return None
            self._reported[token_id] = now
            self._reported = {t: at for t, at in self._reported.items() if now - at <= window_s}
        data = {"token_id": token_id, "sources": [last[0], net], "seconds_apart": round(now - last[1], 1)}
        return Finding("token_misuse", net, data)

    def deleted(self, address: str, actor: str, path: str) -> Finding | None:
        """A successful DELETE by ``actor``: a burst of them is reported (an account taken over,
        or a script gone wrong), not blocked: the actor may mean it."""
        settings = self._settings()
        with self._lock:
            window = self._windows.setdefault(("destructive_burst", actor), _Window())
            window.add(time.monotonic(), path[:128], settings.threat_window_s)
            paths = [p for _, p in window.seen]
            if len(paths) < settings.threat_delete_burst:
                return None
            del self._windows[("destructive_burst", actor)]
        data = {
            "actor": actor,
            "count": len(paths),
            "window_s": settings.threat_window_s,
            "sample": paths[:_SAMPLE],
        }
        return Finding("destructive_burst", normalise(address), data)

    def report(self, finding: Finding) -> None:
        """The event of a finding that blocks nothing."""
        with self.db.session() as session:
            events.publish(
                session,
                f"security.{finding.kind}",
                "source",
                finding.source[:40],
                tenant_id=None,
                source=finding.source,
                action="reported",
                **finding.data,
            )
        with self._lock:
            self.detections[finding.kind] = self.detections.get(finding.kind, 0) + 1

    def _block(self, kind: str, source: str, count: int, window_s: float, sample: list[str]) -> Detection:
        now = utcnow()
        until = now + timedelta(seconds=self._settings().threat_block_s)
        what = "accounts" if kind == "credential_stuffing" else "missing resources"
        reason = f"{count} {what} in {window_s:g} s from {source}"
        block = SecurityBlock(
            id=new_id("blk"), source=source, kind=kind, reason=reason, created_at=now, expires_at=until
        )
        with self.db.session() as session:
            session.add(block)
            events.publish(
                session,
                f"security.{kind}",
                "source",
                source[:40],
                tenant_id=None,
                source=source,
                count=count,
                window_s=window_s,
                sample=sample,
                reason=reason,
                action="blocked",
                block_id=block.id,
                blocked_until=until.isoformat(),
                lift=f"DELETE /v1/security/blocks/{block.id} (administrators)",
            )
        self._remember(source, until)
        with self._lock:
            self.detections[kind] = self.detections.get(kind, 0) + 1
        return Detection(kind, source, block.id, until)


class SecurityService(Service):
    """Administrators' view of the blocks, and lifting one early."""

    raises = (Forbidden,)

    def _admin(self) -> None:
        if self.principal.kind != "user" or not self.principal.is_global:
            raise Forbidden("Security blocks are for platform administrators.")

    def blocks(self, *, active_only: bool = True) -> list[SecurityBlock]:
        self._admin()
        stmt = select(SecurityBlock).order_by(SecurityBlock.created_at.desc()).limit(500)
        if active_only:
            stmt = stmt.where(SecurityBlock.lifted_at.is_(None), SecurityBlock.expires_at > utcnow())
        return list(self.session.scalars(stmt))

    def lift(self, block_id: str) -> SecurityBlock:
        """Lift a block now (idempotent: a lifted or expired block is answered as it is)."""
        self._admin()
        block = self.session.get(SecurityBlock, block_id)
        if block is None:
            raise NotFound("security block", block_id)
        if block.lifted_at is None:
            now = utcnow()
            self.session.execute(
                update(SecurityBlock)
                .where(SecurityBlock.id == block_id, SecurityBlock.lifted_at.is_(None))
                .values(lifted_at=now, lifted_by=self.principal.username)
            )
            block.lifted_at, block.lifted_by = now, self.principal.username
            events.publish(
                self.session,
                "security.block_lifted",
                "source",
                block.source[:40],
                tenant_id=None,
                source=block.source,
                block_id=block.id,
                lifted_by=self.principal.username,
            )
        detector = getattr(self.ctx, "threats", None)
        if isinstance(detector, ThreatDetector):
            detector.forget(block.source)
        return block
