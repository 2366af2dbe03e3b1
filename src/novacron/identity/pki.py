"""The platform's own certificate authority: the server's TLS certificate for agents to pin.

The first server to start makes an EC P-256 CA and keeps it in the database, so that every
replica of the server signs its own TLS certificate (under ``<state_dir>/pki``) with the same CA.
Agents learn the CA's SHA-256 fingerprint out of band (it is printed with each join token, as
kubeadm does) and verify whichever replica they reach against that CA from then on.

The CA's private key is stored sealed by the encryption service (``identity/encryption.py``) and
is opened in memory only to sign a replica's certificate; it is never written to disk (nodes of
older versions kept a clear ``pki/ca.key``: it is removed once the database holds the CA).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy.exc import IntegrityError

from novacron.db.models import CertificateAuthority

if TYPE_CHECKING:
    from novacron.db.base import Database
    from novacron.identity.encryption import EncryptionService

CA_DAYS = 3650
SERVER_DAYS = 825
PLATFORM_CA = "platform"


@dataclass(frozen=True)
class ServerTLS:
    ca_cert: Path
    cert: Path
    key: Path

    def ca_fingerprint(self) -> str:
        return ca_fingerprint(self.ca_cert.read_bytes())


def ca_fingerprint(ca_pem: bytes) -> str:
    der = x509.load_pem_x509_certificate(ca_pem).public_bytes(serialization.Encoding.DER)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _new_ca() -> tuple[bytes, bytes]:
    """A fresh CA: (certificate PEM, private key PEM)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "NovaCron platform CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    return ca.public_bytes(serialization.Encoding.PEM), _key_pem(ca_key)


def key_pem_aad(name: str) -> str:
    """What a CA's sealed private key is bound to."""
    return f"certificate_authorities.key_pem:{name}"


def _stored_ca(db: Database, enc: EncryptionService) -> tuple[bytes, bytes] | None:
    with db.read_session() as s:
        row = s.get(CertificateAuthority, PLATFORM_CA)
        if row is None:
            return None
        return row.cert_pem.encode(), enc.open_text(row.key_pem, key_pem_aad(row.name)).encode()


def shared_ca(db: Database, pki: Path, enc: EncryptionService) -> tuple[bytes, bytes]:
    """The platform CA from the database, created on the first start of the first replica.

    A node that made its CA on disk before the CA moved to the database offers that one, so the
    agents that pinned it keep trusting the server.
    """
    if (stored := _stored_ca(db, enc)) is not None:
        return stored
    cert_path, key_path = pki / "ca.crt", pki / "ca.key"
    if cert_path.exists() and key_path.exists():
        cert, key = cert_path.read_bytes(), key_path.read_bytes()
    else:
        cert, key = _new_ca()
    sealed = enc.seal_text(key.decode(), key_pem_aad(PLATFORM_CA))
    try:
        with db.session() as s:
            s.add(CertificateAuthority(name=PLATFORM_CA, cert_pem=cert.decode(), key_pem=sealed))
    except IntegrityError:
        pass  # another replica stored its CA first: use that one
    stored = _stored_ca(db, enc)
    assert stored is not None
    return stored


#: what a replica's certificate is for: serving (API, agents) and, among replicas, being a
#: client too (the Alertmanagers' gossip is mutual TLS)
_USAGES = (x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)


def _current(cert_pem: bytes, names: list[str]) -> bool:
    """Whether a certificate already names exactly ``names`` for every usage a replica needs."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return {str(n.value) for n in alt} == set(names) and all(u in usages for u in _USAGES)


def ensure_server_tls(db: Database, state_dir: Path, names: list[str], enc: EncryptionService) -> ServerTLS:
    """This replica's TLS certificate for ``names`` (DNS names or IPs), signed by the shared CA."""
    pki = state_dir / "pki"
    pki.mkdir(mode=0o700, parents=True, exist_ok=True)
    tls = ServerTLS(ca_cert=pki / "ca.crt", cert=pki / "server.crt", key=pki / "server.key")
    ca_pem, ca_key_pem = shared_ca(db, pki, enc)
    # the CA key lives sealed in the database only: a clear copy on disk would undo that
    (pki / "ca.key").unlink(missing_ok=True)
    if not tls.ca_cert.exists() or tls.ca_cert.read_bytes() != ca_pem:
        tls.ca_cert.write_bytes(ca_pem)
        tls.cert.unlink(missing_ok=True)
    if tls.cert.exists() and not _current(tls.cert.read_bytes(), names):
        tls.cert.unlink()
    if not tls.cert.exists():
        _issue_server_cert(tls, ca_pem, ca_key_pem, names)
    return tls


def _issue_server_cert(tls: ServerTLS, ca_pem: bytes, ca_key_pem: bytes, names: list[str]) -> None:
    now = dt.datetime.now(dt.UTC)
    loaded = serialization.load_pem_private_key(ca_key_pem, None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    ca_key = loaded
    ca = x509.load_pem_x509_certificate(ca_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.ExtendedKeyUsage(list(_USAGES)), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(tls.key, _key_pem(key))
    tls.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
