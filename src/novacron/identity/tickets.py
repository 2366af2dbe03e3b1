"""Access tickets: how a browser opens a WebSocket or an event stream without a token in the URL.

Browsers cannot send an ``Authorization`` header on a WebSocket (or ``EventSource``) handshake, and
a token in a query string ends up in logs, histories and Referer headers. So an authenticated call
(``POST /v1/tickets``) trades the caller's access token for a ticket: random, valid for
``TTL_S`` seconds, for ONE path, and good once. The handshake passes ``?ticket=``.

Tickets are rows (stored as SHA-256 hashes) so that any replica can redeem a ticket another one
issued; redeeming deletes the row, and only the one delete that removed it wins, so a replayed
ticket is refused even when two replicas race. The ticket carries its token's id and expiry: a
revoked or expired token, a disabled user or "end every session" stops its tickets too.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from datetime import timedelta

from sqlalchemy import delete

from novacron.db.base import Database, utcnow
from novacron.db.models import AccessTicket
from novacron.errors import Forbidden, InvalidInput
from novacron.identity.principal import Principal
from novacron.identity.tokens import TokenService, unauthorized

PREFIX = "nct_"
TTL_S = 30
#: the only paths a ticket opens: handshakes where a browser cannot send a header
HANDSHAKE_PATHS = (
    re.compile(r"/v1/vms/[A-Za-z0-9_.-]{1,64}/(?:console|vnc)"),
    re.compile(r"/v1/events/(?:ws|stream)"),
    re.compile(r"/v1/graphql/ws"),
)


class TicketPathInvalid(InvalidInput):
    """The path is not a WebSocket/SSE handshake a ticket may open."""

    def __init__(self, reason: str) -> None:
        super().__init__("path", reason)


def _hash(ticket: str) -> str:
    return hashlib.sha256(ticket.encode()).hexdigest()


def check_path(path: str) -> str:
    """``path`` if a ticket may open it, else ``TicketPathInvalid``."""
    if not any(p.fullmatch(path) for p in HANDSHAKE_PATHS):
        raise TicketPathInvalid(
            "a ticket opens only a WebSocket or event-stream path: /v1/vms/{id}/console, /v1/vms/{id}/vnc, "
            "/v1/events/ws, /v1/events/stream or /v1/graphql/ws"
        )
    return path


def issue(db: Database, principal: Principal, path: str) -> str:
    """A new ticket for ``principal`` (a user's access token) that opens ``path`` once."""
    if principal.kind != "user" or not principal.token_id:
        raise Forbidden("Only a user's access token can be traded for a ticket.")
    check_path(path)
    ticket = PREFIX + secrets.token_urlsafe(32)
    with db.session() as s:
        # expired tickets that were never used: pruned here rather than by a separate sweeper
        s.execute(delete(AccessTicket).where(AccessTicket.expires_at < utcnow()))
        s.add(
            AccessTicket(
                ticket_hash=_hash(ticket),
                user_id=principal.user_id,
                token_id=principal.token_id,
                token_exp=float(principal.extra.get("exp") or time.time() + TTL_S),
                issued_at=time.time(),
                session_id=principal.extra.get("sid", ""),
                path=path,
                expires_at=utcnow() + timedelta(seconds=TTL_S),
            )
        )
    return ticket


def redeem(db: Database, tokens: TokenService, ticket: str, path: str) -> Principal:
    """The user a ticket was issued to, if it is unused, unexpired and for ``path``; it is spent
    either way. ``Unauthenticated`` otherwise."""
    refused = unauthorized("Unknown, used or expired ticket; ask for a new one with POST /v1/tickets.")
    if not ticket.startswith(PREFIX):
        raise refused
    key = _hash(ticket)
    with db.session() as s:
        row = s.get(AccessTicket, key)
        if row is None:
            raise refused
        spent = s.execute(delete(AccessTicket).where(AccessTicket.ticket_hash == key))
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            raise refused  # another request (or replica) redeemed it first
        claims = {
            "sub": row.user_id,
            "jti": row.token_id,
            "iat": row.issued_at,
            "exp": row.token_exp,
            "sid": row.session_id,
        }
        usable = row.path == path and row.expires_at > utcnow() and row.token_exp > time.time()
    if not usable:
        raise refused
    return tokens.principal_of(claims)
