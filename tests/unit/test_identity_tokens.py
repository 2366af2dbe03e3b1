from __future__ import annotations

import asyncio
import time
from pathlib import Path

import jwt
import pytest

from novacron.api.errors import status_of
from novacron.db.models import Event, RefreshToken, User
from novacron.errors import Unauthenticated
from novacron.identity.login import WRONG, LoggedIn, LoginRefused
from novacron.identity.permissions import permissions_of
from tests.unit.identity_helpers import add_user, issue, make_service


def _refused(fn: object, *args: object, match: str) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as info:
        fn(*args)  # type: ignore[operator]
    assert status_of(type(info.value)) == 401
    assert match in info.value.detail, info.value.detail
    return info.value


def test_issue_and_authenticate(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path)
    uid = add_user(db, role="tenant-admin")
    access, refresh, expires_in = issue(db, ts, uid)
    assert expires_in == 900 and refresh.startswith("ncr_")
    header = jwt.get_unverified_header(access)
    claims = jwt.decode(access, options={"verify_signature": False})
    assert header["alg"] == "ES256" and header["kid"]
    assert {"iss", "sub", "tid", "role", "jti", "iat", "exp"} <= claims.keys()
    assert claims["sub"] == uid and claims["role"] == "tenant-admin" and claims["iss"] == "novacron"
    p = ts.authenticate(access)
    assert p.user_id == uid and p.username == "alice" and p.role == "tenant-admin"
    assert p.tenant_id == claims["tid"] and p.permissions == permissions_of("tenant-admin")
    assert p.token_id == claims["jti"]
    with db.session() as s:  # only a hash of the refresh token is stored
        assert s.query(RefreshToken).filter_by(token_hash=refresh).count() == 0


def test_garbage_tampered_and_foreign_tokens(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path)
    uid = add_user(db)
    access, _, _ = issue(db, ts, uid)
    _refused(ts.authenticate, "not-a-jwt", match="well-formed")
    head, body, sig = access.split(".")
    forged = jwt.encode(
        {"sub": uid, "role": "admin"},
        "a-symmetric-secret-of-32-bytes!!",
        algorithm="HS256",
        headers={"kid": "x"},
    )
    _refused(ts.authenticate, forged, match="unknown or retired key")
    other_claims = jwt.decode(access, options={"verify_signature": False}) | {"role": "admin"}
    import base64
    import json

    tampered_body = base64.urlsafe_b64encode(json.dumps(other_claims).encode()).decode().rstrip("=")
    _refused(ts.authenticate, f"{head}.{tampered_body}.{sig}", match="signature")


def test_expired_token(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path, access_token_ttl_s=-60)
    uid = add_user(db)
    access, _, _ = issue(db, ts, uid)
    _refused(ts.authenticate, access, match="expired")


def test_revocation_takes_effect_at_once(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path)
    uid = add_user(db)
    access, _, _ = issue(db, ts, uid)
    p = ts.authenticate(access)  # warms every cache
    ts.revoke_access(p.token_id, int(p.extra["exp"]))
    _refused(ts.authenticate, access, match="revoked")
    ts.revoke_access(p.token_id, int(p.extra["exp"]))  # idempotent


def test_disabled_and_deleted_users_refused_at_once(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path)
    uid = add_user(db)
    access, _, _ = issue(db, ts, uid)
    ts.authenticate(access)
    with db.session() as s:
        s.get(User, uid).disabled = True  # type: ignore[union-attr]
    _refused(ts.authenticate, access, match="disabled")
    with db.session() as s:
        s.delete(s.get(User, uid))
    _refused(ts.authenticate, access, match="no longer exists")


def test_role_change_applies_at_once(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path)
    uid = add_user(db, role="tenant-admin")
    access, _, _ = issue(db, ts, uid)
    assert ts.authenticate(access).can("user:write")
    with db.session() as s:
        s.get(User, uid).role = "viewer"  # type: ignore[union-attr]
    assert not ts.authenticate(access).can("user:write")


def test_revoke_user_sessions(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path)
    uid = add_user(db)
    a1, r1, _ = issue(db, ts, uid)
    ts.revoke_user_sessions(uid)
    _refused(ts.authenticate, a1, match="sessions of this account were ended")
    _refused(ts.refresh, r1, match="Unknown refresh token")  # deleted: a replay ends nothing
    time.sleep(0.002)
    a2, _, _ = issue(db, ts, uid)  # a login after the cut works
    assert ts.authenticate(a2).user_id == uid


def test_refresh_rotates_and_reuse_ends_only_that_family(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path)
    uid = add_user(db)
    a1, r1, _ = issue(db, ts, uid)
    other_access, other_refresh, _ = issue(db, ts, uid)  # a second login: another family
    done = ts.refresh(r1)
    a2, r2 = done.access_token, done.refresh_token
    assert r2 != r1 and a2 != a1 and done.owner.user_id == uid
    c1 = jwt.decode(a1, options={"verify_signature": False})
    c2 = jwt.decode(a2, options={"verify_signature": False})
    assert c1["sid"] == c2["sid"]  # same login session
    assert ts.authenticate(a2).user_id == uid
    # r1 was consumed: presenting it again looks like theft, and names whose it was
    refused = _refused(ts.refresh, r1, match="already used")
    assert refused.owner is not None and refused.owner.user_id == uid  # type: ignore[attr-defined]
    _refused(ts.refresh, r2, match="already used")  # the family's legitimate successor died too
    _refused(ts.authenticate, a2, match="revoked")
    _refused(ts.authenticate, a1, match="revoked")
    # ...but the other login session goes on
    assert ts.authenticate(other_access).user_id == uid
    assert ts.refresh(other_refresh).owner.user_id == uid
    with db.session() as s:
        reused = s.query(Event).filter_by(type="token.reused").all()
        assert len(reused) == 2  # r1, then r2: each replay of the ended family is reported
        assert all(e.resource_id == uid and e.data["login_session"] == c1["sid"] for e in reused)
    _refused(ts.refresh, "ncr_unknown", match="Unknown refresh token")


def test_stale_refresh_token_after_password_change_ends_nothing(tmp_path: Path) -> None:
    """Issue 11, finding 13: after a password change and a new login, replaying the refresh
    token from before the change killed the new session too, again and again."""
    db, ts = make_service(tmp_path)
    uid = add_user(db)
    _, old_r1, _ = issue(db, ts, uid)
    old_r2 = ts.refresh(old_r1).refresh_token  # old_r1 is now a used token of the old family
    ts.revoke_user_sessions(uid)  # what a password change does
    time.sleep(0.002)
    new_access, new_refresh, _ = issue(db, ts, uid)  # the new login
    for stale in (old_r1, old_r2, old_r1):
        with pytest.raises(Unauthenticated) as info:
            ts.refresh(stale)
        assert status_of(type(info.value)) == 401
    assert ts.authenticate(new_access).user_id == uid
    assert ts.refresh(new_refresh).owner.user_id == uid


def test_refresh_refused_when_expired(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path, refresh_token_ttl_s=-1)
    uid = add_user(db)
    _, r1, _ = issue(db, ts, uid)
    _refused(ts.refresh, r1, match="expired")


def test_refresh_refused_for_disabled_user(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path)
    uid = add_user(db, "bob")
    _, r1, _ = issue(db, ts, uid)
    with db.session() as s:
        s.get(User, uid).disabled = True  # type: ignore[union-attr]
    _refused(ts.refresh, r1, match="disabled")


def test_password_login_same_answer_for_unknown_user(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path)
    uid = add_user(db, password="pw-alice-123456")
    done = asyncio.run(ts.logins.login("alice@t1", "pw-alice-123456", "192.0.2.1"))
    assert isinstance(done, LoggedIn)
    assert done.account.id == uid and ts.authenticate(done.access_token).user_id == uid
    answers = []
    for username in ("alice@t1", "nobody@t1"):
        with pytest.raises(LoginRefused) as info:
            asyncio.run(ts.logins.login(username, "wrong-password", "192.0.2.1"))
        answers.append((info.value.status, info.value.detail))
    assert answers[0] == answers[1] == (401, WRONG)


def test_verify_micro_benchmark(tmp_path: Path) -> None:
    """Prints figures only; timing assertions do not belong in unit tests."""
    db, ts = make_service(tmp_path)
    uid = add_user(db)
    access, _, _ = issue(db, ts, uid)
    samples = []
    for _ in range(500):
        t0 = time.perf_counter()
        ts.authenticate(access).can("vm:read")
        samples.append(time.perf_counter() - t0)
    samples.sort()
    print(f"authenticate p50 {samples[250] * 1e6:.0f} us, p99 {samples[495] * 1e6:.0f} us")
