"""TOTP (RFC 6238) and recovery codes: the arithmetic, without the database.

Codes are 6 digits over 30 s steps with SHA-1, what every authenticator app reads from an
``otpauth://`` URI. A code is accepted for the step before and after the current one (clocks
drift); ``match_step`` says which step it was, so the caller can refuse a step it already
accepted (a code seen over a shoulder or in a log cannot be replayed within its window).

Recovery codes carry 80 random bits (16 base32 characters, shown in groups of four), so a
SHA-256 keyed with the user's id is enough to store them: no dictionary to try, no slow hash
needed, and checking ten of them costs nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import pyotp

ISSUER = "NovaCron"
STEP_S = 30
DIGITS = 6
#: steps either side of now a code may come from
WINDOW = 1
RECOVERY_CODES = 10
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def new_secret() -> str:
    """A fresh base32 secret of 160 bits (RFC 4226's recommended length)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, account: str) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app reads (as a QR code or pasted)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(
        name=account, issuer_name=ISSUER
    )


def code_at(secret: str, when: float) -> str:
    """The code of the step containing ``when`` (tests; a user's app does the same)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).at(int(when))


def normalise(code: str) -> str:
    """A code as typed, without blanks or dashes."""
    return "".join(ch for ch in code if ch not in " -\t")


def match_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The time step ``code`` belongs to (within the window around now), or None if it matches none."""
    code = normalise(code)
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
    now = time.time() if now is None else now
    current = int(now // STEP_S)
    found = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        # every candidate compared (constant time), none short-circuits
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def new_recovery_codes() -> list[str]:
    """Ten codes of 16 base32 characters, written ``ABCD-EFGH-IJKL-MNOP``."""
    out = []
    for _ in range(RECOVERY_CODES):
        raw = "".join(secrets.choice(_B32) for _ in range(16))
        out.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return out


def recovery_hash(user_id: str, code: str) -> str:
    """How a recovery code is stored: keyed with its user, case and dashes ignored."""
    clean = normalise(code).upper()
    return hmac.new(user_id.encode(), clean.encode(), hashlib.sha256).hexdigest()


def looks_like_recovery(code: str) -> bool:
    """A recovery code rather than a TOTP code (16 base32 characters once dashes are dropped)."""
    clean = normalise(code).upper()
    return len(clean) == 16 and all(ch in _B32 for ch in clean)
