"""TOTP arithmetic against RFC 6238's test vectors, its window, and recovery codes' storage form."""

from __future__ import annotations

from novacron.identity import totp

#: RFC 6238 appendix B's SHA-1 key "12345678901234567890", base32
RFC_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


def test_codes_are_rfc_6238s() -> None:
    # the RFC's 8-digit values 94287082 and 07081804, as the 6 digits an app shows
    assert totp.code_at(RFC_SECRET, 59) == "287082"
    assert totp.code_at(RFC_SECRET, 1111111109) == "081804"


def test_a_code_is_matched_to_its_step_within_one_step_of_now() -> None:
    now = 1111111109.0
    step = int(now // totp.STEP_S)
    for offset in (-1, 0, 1):
        code = totp.code_at(RFC_SECRET, now + offset * totp.STEP_S)
        assert totp.match_step(RFC_SECRET, code, now) == step + offset
        assert totp.match_step(RFC_SECRET, f"{code[:3]} {code[3:]}", now) == step + offset  # as typed
    assert totp.match_step(RFC_SECRET, totp.code_at(RFC_SECRET, now - 2 * totp.STEP_S), now) is None
    assert (
        totp.match_step(RFC_SECRET, "12345", now) is None
        and totp.match_step(RFC_SECRET, "abcdef", now) is None
    )


def test_recovery_codes_are_random_and_stored_keyed_by_their_user() -> None:
    codes = totp.new_recovery_codes()
    assert len(set(codes)) == 10 and all(totp.looks_like_recovery(c) for c in codes)
    code = codes[0]
    assert totp.recovery_hash("u1", code) == totp.recovery_hash("u1", code.lower().replace("-", ""))
    assert totp.recovery_hash("u1", code) != totp.recovery_hash("u2", code)
    assert not totp.looks_like_recovery("123456")
    assert totp.provisioning_uri(RFC_SECRET, "bob@acme").startswith(
        "otpauth://totp/NovaCron:bob%40acme?secret="
    )
