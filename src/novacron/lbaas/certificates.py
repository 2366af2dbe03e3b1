"""TLS certificate bundles for TERMINATED_HTTPS listeners: checked before HAProxy sees them.

A bundle is PEM text holding the server certificate, its intermediate chain and its private key
(in any order, as people paste them). :func:`parse_bundle` checks it with ``cryptography`` and
raises :class:`~novacron.errors.InvalidInput` naming the field at fault: no certificate or an
unreadable one (``certificate``), no key, an encrypted key or a key that is not the certificate's
(``private_key``), a certificate outside its validity period or without a DNS name to serve by
SNI (``certificate``). It returns what the load balancer needs: the names the certificate is
chosen by, its validity and serial, and the bundle rewritten in the order HAProxy loads
(leaf, chain, unencrypted PKCS#8 key) without blank lines, which the runtime API's
``set ssl cert <<`` payload could not carry.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from novacron.errors import InvalidInput

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_CERTIFICATE = "CERTIFICATE"
_KEYS = frozenset({"PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"})
_SERVER_KEY_TYPES = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)


@dataclass(frozen=True)
class CertificateInfo:
    """What a checked bundle says: the DNS ``names`` a client's SNI selects it by (wildcards as
    ``*.example.com``), its validity, serial and SHA-256 fingerprint, and ``pem``, the bundle
    as HAProxy loads it."""

    names: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    serial: int
    fingerprint_sha256: str
    pem: str

    def expires_within(self, delta: datetime.timedelta, now: datetime.datetime | None = None) -> bool:
        return self.not_after - delta <= (now or _now())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _blocks(pem: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(pem)]


def _load_certificates(blocks: list[tuple[str, str]]) -> list[x509.Certificate]:
    certificates = []
    for label, block in blocks:
        if label != _CERTIFICATE:
            continue
        try:
            certificates.append(x509.load_pem_x509_certificate(block.encode()))
        except ValueError as exc:
            raise InvalidInput("certificate", f"not a readable X.509 certificate: {exc}") from None
    if not certificates:
        raise InvalidInput("certificate", "no PEM certificate (-----BEGIN CERTIFICATE-----) in the bundle")
    return certificates


def _load_key(blocks: list[tuple[str, str]]) -> PrivateKeyTypes:
    keys = [block for label, block in blocks if label in _KEYS]
    if "ENCRYPTED PRIVATE KEY" in {label for label, _ in blocks}:
        raise InvalidInput("private_key", "is encrypted: upload it without a passphrase")
    if len(keys) != 1:
        raise InvalidInput("private_key", f"the bundle must hold exactly one private key, not {len(keys)}")
    try:
        key = serialization.load_pem_private_key(keys[0].encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInput("private_key", f"not a readable private key: {exc}") from None
    if not isinstance(key, _SERVER_KEY_TYPES):
        raise InvalidInput("private_key", "must be an RSA, EC or EdDSA key")
    return key


def _public_der(key: PrivateKeyTypes | x509.Certificate) -> bytes:
    public = key.public_key()
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def dns_names(certificate: x509.Certificate) -> tuple[str, ...]:
    """The certificate's DNS subject alternative names, or its common name when it has none."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return tuple(n.lower() for n in names if n)


def parse_bundle(pem: str, now: datetime.datetime | None = None) -> CertificateInfo:
    """Check a PEM bundle (certificate, chain, key) and describe it; see the module's docstring."""
    blocks = _blocks(pem)
    certificates = _load_certificates(blocks)
    key = _load_key(blocks)
    key_der = _public_der(key)
    leaves = [c for c in certificates if _public_der(c) == key_der]
    if not leaves:
        raise InvalidInput("private_key", "does not match the certificate (their public keys differ)")
    leaf = leaves[0]
    moment = now or _now()
    if leaf.not_valid_after_utc <= moment:
        raise InvalidInput("certificate", f"expired on {leaf.not_valid_after_utc.isoformat()}")
    if leaf.not_valid_before_utc > moment:
        raise InvalidInput("certificate", f"is not valid before {leaf.not_valid_before_utc.isoformat()}")
    names = dns_names(leaf)
    if not names:
        raise InvalidInput("certificate", "has no DNS name (subject alternative name) for SNI")
    chain = [c for c in certificates if c is not leaf]
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    parts = [c.public_bytes(serialization.Encoding.PEM).decode() for c in (leaf, *chain)] + [key_pem]
    return CertificateInfo(
        names=names,
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        serial=leaf.serial_number,
        fingerprint_sha256=leaf.fingerprint(hashes.SHA256()).hex(),
        pem="".join(p.strip() + "\n" for p in parts),
    )


def renew_due(certificate: CertificateInfo, days_before: int, now: datetime.datetime | None = None) -> bool:
    """Whether ``certificate`` expires within ``days_before`` days, so it is time to renew it."""
    return certificate.expires_within(datetime.timedelta(days=days_before), now)
