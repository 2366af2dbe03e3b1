from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from novacron.identity.passwords import (
    PasswordPolicyError,
    check_policy,
    hash_password,
    needs_rehash,
    verify_password,
)


def test_hash_and_verify() -> None:
    h = hash_password("correct horse battery")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse battery")
    assert not verify_password(h, "wrong horse battery")
    assert not verify_password(None, "anything at all")
    assert not verify_password("not-a-hash", "anything at all")
    assert not needs_rehash(h)


def test_weaker_parameters_need_rehash() -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("correct horse battery")
    assert verify_password(weak, "correct horse battery")
    assert needs_rehash(weak)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "at least 12"),
        ("aaaaaaaaaaaaaaa", "too easy to guess"),
        ("alice-is-great-2024", "username"),
        ("x" * 2000, "at most"),
        # the probe's examples (issue 11, finding 6): all were accepted before
        ("password1234", "common and breached"),
        ("passwordpassword", "too easy to guess"),
        ("123456789012", "too easy to guess"),
        ("qwertyuiop123", "common and breached"),
        ("Password2024!", "too easy to guess"),
    ],
)
def test_policy_refuses(password: str, reason: str) -> None:
    with pytest.raises(PasswordPolicyError, match=reason) as info:
        check_policy(password, username="alice", context=("t1-tenant",))
    if "at most" not in reason:  # and says what to do instead
        assert "passphrase" in str(info.value)


@pytest.mark.parametrize(
    "password",
    [
        "tr0ub4dor&3-horse",
        "correct-horse-battery-9",
        "violet kettle marsh lantern",  # no composition rules: lowercase words and spaces are fine
        "x7Gq-2mVt-9pLw",
        "a" * 5 + "-kettle-marsh-lantern-violet" * 4,  # longer than zxcvbn reads: judged by its start
    ],
)
def test_policy_accepts(password: str) -> None:
    check_policy(password, username="alice", context=("t1-tenant",))
