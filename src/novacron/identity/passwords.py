"""Password hashing (argon2id) and the password policy.

Hashes carry their own parameters, so raising the cost later only needs
``needs_rehash`` at the next successful login.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
MAX_LENGTH = 1024

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile defaults

# verified against when the username does not exist, so a miss costs as much as a hit
_DUMMY_HASH = _hasher.hash("novacron-no-such-user-dummy-password")


class PasswordPolicyError(ValueError):
    """The password a user chose breaks the policy; the message says how."""


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


def check_policy(password: str, *, username: str | None = None) -> None:
    """Raise ``PasswordPolicyError`` if a user-chosen password is too weak."""
    if len(password) < MIN_LENGTH:
        raise PasswordPolicyError(f"must be at least {MIN_LENGTH} characters long")
    if len(password) > MAX_LENGTH:
        raise PasswordPolicyError(f"must be at most {MAX_LENGTH} characters long")
    if not password.strip():
        raise PasswordPolicyError("must not be only whitespace")
    if len(set(password)) < 4:
        raise PasswordPolicyError("must use at least 4 different characters")
    if username and username.lower() in password.lower():
        raise PasswordPolicyError("must not contain the username")
