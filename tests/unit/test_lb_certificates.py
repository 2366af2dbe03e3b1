"""Certificate bundles are checked before HAProxy sees them, with errors naming the field."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from novacron.errors import InvalidInput
from novacron.lbaas.certificates import parse_bundle, renew_due
from tests.tlsca import TestCA, key_pem

NOW = dt.datetime.now(dt.UTC)


def pem(certificate_pem: str, key: ec.EllipticCurvePrivateKey) -> str:
    return certificate_pem + key_pem(key)


def test_a_bundle_in_any_order_is_described_and_rewritten_leaf_chain_key() -> None:
    ca = TestCA.create()
    certificate, key = ca.leaf(["www.example.test", "*.Example.test"])
    leaf_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    info = parse_bundle("\n\n" + key_pem(key) + "\n" + ca.pem + "\n" + leaf_pem)
    assert info.names == ("www.example.test", "*.example.test")
    assert info.serial == certificate.serial_number
    assert info.pem.index(leaf_pem.strip()) < info.pem.index(ca.pem.strip()) < info.pem.index("PRIVATE KEY")
    assert "\n\n" not in info.pem  # the runtime API's payload ends at the first blank line


@pytest.mark.parametrize(
    ("bundle", "field", "reason"),
    [
        (lambda ca: key_pem(ec.generate_private_key(ec.SECP256R1())), "certificate", "no PEM certificate"),
        (lambda ca: ca.bundle(["a.test"]).split("-----BEGIN PRIVATE")[0], "private_key", "exactly one"),
        (
            lambda ca: pem(
                ca.bundle(["a.test"]).split("-----BEGIN PRIVATE")[0], ec.generate_private_key(ec.SECP256R1())
            ),
            "private_key",
            "does not match",
        ),
        (
            lambda ca: ca.bundle(["a.test"], NOW - dt.timedelta(days=3), NOW - dt.timedelta(days=1)),
            "certificate",
            "expired on",
        ),
        (
            lambda ca: ca.bundle(["a.test"], not_before=NOW + dt.timedelta(days=1)),
            "certificate",
            "not valid before",
        ),
        (lambda ca: ca.bundle([]), "certificate", "no DNS name"),
        (
            lambda ca: ca.bundle(["a.test"]).replace("PRIVATE KEY-----", "ENCRYPTED PRIVATE KEY-----"),
            "private_key",
            "encrypted",
        ),
    ],
)
def test_a_bad_bundle_is_refused_naming_the_field(
    bundle: Callable[[TestCA], str], field: str, reason: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_bundle(bundle(TestCA.create()))
    [error] = raised.value.fields
    assert error.field == field and reason in error.reason, error


def test_renewal_is_due_within_the_days_before_expiry() -> None:
    info = parse_bundle(TestCA.create().bundle(["a.test"], not_after=NOW + dt.timedelta(days=20)))
    assert renew_due(info, days_before=30)
    assert not renew_due(info, days_before=10)
    assert renew_due(info, days_before=10, now=NOW + dt.timedelta(days=11))
