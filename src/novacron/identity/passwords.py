"""Password hashing (argon2id) and the password policy (NIST SP 800-63B style).

Hashes carry their own parameters, so raising the cost later only needs
``needs_rehash`` at the next successful login.

The policy has no composition rules (no "one digit, one symbol"): a minimum length, a
maximum (hashing cost), the context (username, tenant, "novacron"), a local list of common
and breached passwords, and a strength estimate by ``zxcvbn``. The list is zxcvbn's own
``passwords`` frequency list (the 30,000 most frequent passwords of public breach corpora,
shipped inside the PyPI package, so nothing is fetched at run time); zxcvbn also matches
l33t, reversed, repeated and keyboard-pattern variants of it and of English words and names.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

MIN_LENGTH = 12
MAX_LENGTH = 1024
#: zxcvbn score (0-4) a password must reach: 3 is "safely unguessable" (~10^8 guesses and more)
MIN_SCORE = 3
#: zxcvbn refuses longer input (its matching is super-linear); a longer password is judged by its
#: first 72 characters, which is conservative: more characters never make it weaker
_ZXCVBN_MAX = 72

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile defaults

# verified against when the username does not exist, so a miss costs as much as a hit
_DUMMY_HASH = _hasher.hash("novacron-no-such-user-dummy-password")

_ADVICE = "choose a longer passphrase of several uncommon words (e.g. four random words)"


class PasswordPolicyError(ValueError):
    """The password a user chose breaks the policy; the message says why and what to do."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; never raises. ``None`` burns the same time and says False."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


@functools.cache
def _breached() -> frozenset[str]:
    return frozenset(FREQUENCY_LISTS["passwords"])


def check_policy(password: str, *, username: str | None = None, context: Iterable[str] = ()) -> None:
    """Raise ``PasswordPolicyError`` if a user-chosen password is too weak.

    ``context``: other words an attacker would try first for this account (its tenant's name).
    """
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"must be at least {MIN_LENGTH} characters long; {_ADVICE}")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"must be at most {MAX_LENGTH} characters long")
    if not password.strip():
        raise PasswordPolicyError(f"must not be only whitespace; {_ADVICE}")
    lowered = password.lower()
    if lowered in _breached():
        raise PasswordPolicyError(f"is in a list of common and breached passwords; {_ADVICE}")
    if username and username.lower() in lowered:
        raise PasswordPolicyError(f"must not contain the username; {_ADVICE}")
    words = [w for w in (username, *context, "novacron") if w]
    result = zxcvbn(password[:_ZXCVBN_MAX], user_inputs=words)
    if result["score"] < MIN_SCORE:
        feedback = result.get("feedback") or {}
        why = str(feedback.get("warning") or "it follows a common pattern").rstrip(".")
        raise PasswordPolicyError(f"is too easy to guess ({why}); {_ADVICE}")
