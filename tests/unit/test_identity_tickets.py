"""Handshake tickets: one path, one use, any replica, no longer than the token that asked for them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from novacron.api.errors import status_of
from novacron.db.base import Database
from novacron.db.models import AccessTicket
from novacron.errors import Unauthenticated
from novacron.identity import tickets
from novacron.identity.tokens import TokenService
from tests.unit.identity_helpers import add_user, issue, make_service

CONSOLE = "/v1/vms/vm-1/console"


def _refused(db: Database, ts: TokenService, ticket: str, path: str = CONSOLE) -> None:
    with pytest.raises(Unauthenticated) as info:
        tickets.redeem(db, ts, ticket, path)
    assert status_of(type(info.value)) == 401


def test_ticket_is_single_use_for_one_path_and_stored_hashed(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path)
    uid = add_user(db)
    principal = ts.authenticate(issue(db, ts, uid)[0])
    ticket = tickets.issue(db, principal, CONSOLE)
    with db.read_session() as s:
        assert s.query(AccessTicket).filter_by(ticket_hash=ticket).count() == 0  # only its hash
    # another replica (its own engine and token service on the same database) redeems it
    other_db = Database(db.url)
    other = TokenService(other_db, ts.settings)
    assert tickets.redeem(other_db, other, ticket, CONSOLE).user_id == uid
    _refused(db, ts, ticket)
    # for another path: refused, and spent all the same
    wrong = tickets.issue(db, principal, "/v1/events/ws")
    _refused(db, ts, wrong)
    _refused(db, ts, wrong, "/v1/events/ws")
    with pytest.raises(tickets.TicketPathInvalid):
        tickets.issue(db, principal, "/v1/vms")


def test_concurrent_redeems_of_one_ticket_let_one_through(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path)
    principal = ts.authenticate(issue(db, ts, add_user(db))[0])
    for _ in range(5):
        ticket = tickets.issue(db, principal, CONSOLE)

        def redeem(_: int, ticket: str = ticket) -> bool:
            try:
                tickets.redeem(db, ts, ticket, CONSOLE)
                return True
            except Unauthenticated:
                return False

        with ThreadPoolExecutor(4) as pool:
            assert sum(pool.map(redeem, range(4))) == 1


def test_ending_the_sessions_ends_the_tickets(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path)
    uid = add_user(db)
    principal = ts.authenticate(issue(db, ts, uid)[0])
    ticket = tickets.issue(db, principal, CONSOLE)
    ts.revoke_user_sessions(uid)  # a password change, a stolen refresh token
    _refused(db, ts, ticket)
