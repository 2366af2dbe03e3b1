from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import jwt
import pytest

from novacron.db.models import SigningKey
from novacron.identity.keys import generate_key_pair, public_jwk
from tests.unit.identity_helpers import add_user, issue, make_service


@pytest.mark.parametrize(("alg", "kty"), [("ES256", "EC"), ("RS256", "RSA")])
def test_key_pair_and_jwk(alg: str, kty: str) -> None:
    private_pem, public_pem = generate_key_pair(alg)
    assert "PRIVATE KEY" in private_pem and "PUBLIC KEY" in public_pem
    jwk = public_jwk("k1", alg, public_pem)
    assert jwk["kty"] == kty and jwk["kid"] == "k1" and jwk["alg"] == alg and jwk["use"] == "sig"
    assert "d" not in jwk  # never the private part
    token = jwt.encode({"x": 1}, private_pem, algorithm=alg)
    assert jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[alg]) == {"x": 1}


def test_unsupported_alg() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        generate_key_pair("HS256")


def test_first_use_creates_one_active_key(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path)
    key = ts.keys.ensure_active()
    assert key.alg == "ES256"
    assert [k["kid"] for k in ts.keys.jwks()["keys"]] == [key.kid]
    assert ts.keys.ensure_active().kid == key.kid


def test_rotation_keeps_old_tokens_valid_and_publishes_both(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path)
    uid = add_user(db)
    old_token, _, _ = issue(db, ts, uid)
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    with db.session() as s:
        new = ts.keys.rotate(s, "RS256")
    new_token, _, _ = issue(db, ts, uid)
    assert jwt.get_unverified_header(new_token)["kid"] == new.kid != old_kid
    assert ts.authenticate(old_token).user_id == uid
    assert ts.authenticate(new_token).user_id == uid
    kids = {k["kid"] for k in ts.keys.jwks()["keys"]}
    assert kids == {old_kid, new.kid}
    # another process (fresh cache) verifies both too, finding keys in the database
    _, other = make_service(tmp_path)
    assert other.authenticate(old_token).user_id == uid
    assert other.authenticate(new_token).user_id == uid


def test_retired_key_expires_after_grace(tmp_path: Path) -> None:
    db, ts = make_service(tmp_path)
    uid = add_user(db)
    old_token, _, _ = issue(db, ts, uid)
    old_kid = jwt.get_unverified_header(old_token)["kid"]
    with db.session() as s:
        ts.keys.rotate(s)
        row = s.get(SigningKey, old_kid)
        assert row is not None and row.retired_at is not None and not row.active
        row.retired_at -= ts.keys.grace + timedelta(seconds=1)
    _, fresh = make_service(tmp_path)
    assert old_kid not in {k["kid"] for k in fresh.keys.jwks()["keys"]}
    with pytest.raises(Exception, match="unknown or retired key"):
        fresh.authenticate(old_token)
    with db.session() as s:  # the next rotation prunes it
        fresh.keys.rotate(s)
    with db.session() as s:
        assert s.get(SigningKey, old_kid) is None
