"""The certificate store of load balancers: tenants' TLS certificates, their keys sealed at rest.

Octavia keeps listener certificates in Barbican; NovaCron keeps them here. A certificate is
uploaded as PEM (certificate, chain and key, in one text or the key apart) or as PKCS#12 (base64,
with its password if it has one), checked by :func:`~novacron.lbaas.certificates.parse_bundle`
(the key is the certificate's, the certificate is valid now and names a DNS name; otherwise a 422
naming the field and the reason), or is ordered from an ACME directory
(:mod:`novacron.lbaas.acme_service`). The chain and the facts read from it (names, subject,
issuer, validity, fingerprint) are stored readable; the private key is sealed with the platform's
encryption (``identity/encryption.py``) bound to the row's id, and the API never returns it.

A certificate is its tenant's: another tenant's is not found, and :func:`certificates_for` (what
the load balancer's apply task calls to hand the agent the bundles) resolves references within
the load balancer's tenant only. A certificate a listener uses cannot be deleted: the load
balancer service registers :func:`register_in_use_check` so the store can ask.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron import events
from novacron.compute.scope import resolve_project
from novacron.db.base import new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import LbCertificate
from novacron.db.resolve import Named, resolve, scoped
from novacron.errors import Conflict, InvalidInput, NameTaken, NotFound
from novacron.identity.encryption import encryption_for
from novacron.lbaas.certificates import CertificateInfo, parse_bundle
from novacron.service import Service

if TYPE_CHECKING:
    from novacron.config import Settings
    from novacron.lbaas.acme_service import AcmeOrder

PENDING, ACTIVE, ERROR = "PENDING", "ACTIVE", "ERROR"
#: the most bytes of a PKCS#12 file (decoded) or a PEM upload
MAX_UPLOAD = 64 * 1024
_KEY_BLOCK = re.compile(r"-----BEGIN PRIVATE KEY-----")

#: who uses a certificate: (session, certificate) -> what uses it ("listener https of load
#: balancer web"), empty when nothing does
InUseCheck = Callable[[Session, LbCertificate], list[str]]
_in_use_checks: list[InUseCheck] = []


def register_in_use_check(check: InUseCheck) -> None:
    """Have the store ask ``check`` before deleting a certificate (the load balancer service
    registers the listeners that reference it)."""
    if check not in _in_use_checks:
        _in_use_checks.append(check)


def private_key_aad(cert_id: str) -> str:
    """What a certificate's sealed private key is bound to."""
    return f"lb_certificates.private_key:{cert_id}"


@dataclass(frozen=True)
class Upload:
    """A certificate given by the caller: PEM (``certificate`` with the chain, the key in it or in
    ``private_key``) or PKCS#12 (``pkcs12`` base64, ``pkcs12_password`` if it has one)."""

    certificate: str | None = None
    private_key: str | None = None
    pkcs12: str | None = None
    pkcs12_password: str | None = None


@dataclass(frozen=True)
class NewCertificate:
    """A certificate to store: uploaded (``upload``) or ordered from ACME (``acme``), exactly one."""

    name: str
    project_id: str | None = None
    description: str = ""
    upload: Upload | None = None
    acme: AcmeOrder | None = None


def _pem_of_pkcs12(data: str, password: str | None) -> str:
    """The PEM bundle in a base64 PKCS#12 file."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("pkcs12", "is not base64") from None
    if len(raw) > MAX_UPLOAD:
        raise InvalidInput("pkcs12", f"larger than {MAX_UPLOAD} bytes")
    try:
        key, certificate, chain = pkcs12.load_key_and_certificates(
            raw, password.encode() if password else None
        )
    except ValueError as exc:
        # cryptography says "Invalid password or PKCS12 data" for both
        raise InvalidInput("pkcs12", f"cannot be read (a wrong password or not PKCS#12): {exc}") from None
    if certificate is None:
        raise InvalidInput("pkcs12", "holds no certificate")
    if key is None:
        raise InvalidInput("pkcs12", "holds no private key")
    parts = [c.public_bytes(serialization.Encoding.PEM).decode() for c in (certificate, *chain)]
    parts.append(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
    )
    return "".join(parts)


def checked_upload(upload: Upload) -> CertificateInfo:
    """The upload's certificate, checked (422 naming the field at fault)."""
    if upload.pkcs12 is not None:
        if upload.certificate is not None or upload.private_key is not None:
            raise InvalidInput("pkcs12", "give either PKCS#12 or PEM (certificate, private_key), not both")
        return parse_bundle(_pem_of_pkcs12(upload.pkcs12, upload.pkcs12_password))
    if upload.certificate is None:
        raise InvalidInput("certificate", "required: PEM certificate and chain, or pkcs12, or acme")
    if upload.pkcs12_password is not None:
        raise InvalidInput("pkcs12_password", "only goes with pkcs12")
    return parse_bundle(upload.certificate + "\n" + (upload.private_key or ""))


def split_bundle(pem: str) -> tuple[str, str]:
    """(chain, key) of a bundle as :func:`parse_bundle` writes it (leaf, chain, PKCS#8 key)."""
    match = _KEY_BLOCK.search(pem)
    if match is None:  # parse_bundle always writes one
        raise InvalidInput("private_key", "the bundle holds no PKCS#8 private key")
    return pem[: match.start()], pem[match.start() :]


def install(row: LbCertificate, info: CertificateInfo, settings: Settings) -> None:
    """Store ``info`` in ``row``: the chain and its facts readable, the key sealed."""
    chain, key = split_bundle(info.pem)
    leaf = x509.load_pem_x509_certificate(chain.encode())
    row.certificate_pem = chain
    row.private_key = encryption_for(settings).seal_text(key, private_key_aad(row.id))
    row.names = list(info.names)
    row.subject = leaf.subject.rfc4514_string()[:512]
    row.issuer = leaf.issuer.rfc4514_string()[:512]
    row.serial = format(info.serial, "x")[:64]
    row.fingerprint_sha256 = info.fingerprint_sha256
    row.not_before = info.not_before
    row.not_after = info.not_after
    if row.source == "acme":
        row.renew_after = info.not_after - datetime.timedelta(days=settings.acme_renew_days)
    row.status = ACTIVE
    row.last_error = None


def bundle_of(row: LbCertificate, settings: Settings) -> str:
    """The certificate's PEM bundle as HAProxy loads it (leaf, chain, key): the key opened."""
    if row.status != ACTIVE or row.certificate_pem is None or row.private_key is None:
        raise Conflict(f"Certificate '{row.name}' is {row.status}: it has no certificate to serve yet.")
    key = encryption_for(settings).open_text(row.private_key, private_key_aad(row.id))
    return row.certificate_pem + key


def tenant_certificate(session: Session, tenant_id: str, ref: str) -> LbCertificate | None:
    """The tenant's certificate of this id, or of this name when only one has it."""
    base = select(LbCertificate).where(LbCertificate.tenant_id == tenant_id)
    row = session.scalar(base.where(LbCertificate.id == ref))
    if row is not None:
        return row
    rows = list(session.scalars(base.where(LbCertificate.name == ref).limit(2)))
    return rows[0] if len(rows) == 1 else None


def certificates_for(
    session: Session, tenant_id: str, refs: Iterable[str], settings: Settings
) -> dict[str, str]:
    """``{ref: PEM bundle}`` of the tenant's certificates ``refs`` (ids, or names unique in the
    tenant), keys opened, for ``LbApply.secrets["certificates"]``. A reference to nothing of the
    tenant's (another tenant's certificate too) is NotFound; one not issued yet is Conflict."""
    bundles: dict[str, str] = {}
    for ref in dict.fromkeys(refs):
        row = tenant_certificate(session, tenant_id, ref)
        if row is None:
            raise NotFound("certificate", ref)
        bundles[ref] = bundle_of(row, settings)
    return bundles


class CertificateService(Service):
    """Store, read and delete the caller's load-balancer certificates."""

    def list(
        self, params: ListParams, *, name: str | None = None, project_id: str | None = None
    ) -> tuple[list[LbCertificate], str | None]:
        """One page of the certificates the caller sees."""
        query = scoped(select(LbCertificate), LbCertificate, self.principal)
        for column, value in ((LbCertificate.name, name), (LbCertificate.project_id, project_id)):
            if value is not None:
                query = query.where(column == value)
        return paginate(self.session, query, LbCertificate, params)

    def get(self, ref: str) -> LbCertificate:
        """The certificate of this id or name, as the caller sees it."""
        return resolve(self.session, self.principal, LbCertificate, ref)

    def resolve_ref(self, ref: str, field: str) -> LbCertificate:
        """A certificate a request body names in ``field`` (a listener's ``default_tls_container_ref``)."""
        return resolve(self.session, self.principal, LbCertificate, ref, named=Named(field))

    def create(self, spec: NewCertificate) -> tuple[LbCertificate, str | None]:
        """A stored certificate, and the id of the task issuing it when it comes from ACME."""
        if (spec.upload is None) == (spec.acme is None):
            raise InvalidInput(
                "certificate", "give a certificate (PEM or pkcs12) or an acme order, one of them"
            )
        project = resolve_project(self.session, self.principal, spec.project_id)
        taken = select(LbCertificate.id).where(
            LbCertificate.project_id == project.id, LbCertificate.name == spec.name
        )
        if self.session.scalar(taken):
            raise NameTaken("certificate", spec.name, "name")
        row = LbCertificate(
            id=new_id("crt"),
            tenant_id=project.tenant_id,
            project_id=project.id,
            name=spec.name,
            description=spec.description,
            source="upload" if spec.upload is not None else "acme",
            status=PENDING,
            names=[],
        )
        task_id = None
        if spec.upload is not None:
            install(row, checked_upload(spec.upload), self.ctx.settings)
            self.session.add(row)
            self.session.flush()
            self._publish("certificate.created", row)
        else:
            from novacron.lbaas.acme_service import order

            assert spec.acme is not None
            task_id = order(self.session, self.ctx, row, spec.acme)
            self._publish("certificate.created", row)
        return row, task_id

    def delete(self, row: LbCertificate) -> None:
        """Delete a certificate no listener uses."""
        users = [user for check in _in_use_checks for user in check(self.session, row)]
        if users:
            raise Conflict(f"Certificate '{row.name}' is used by {', '.join(users[:10])}; change them first.")
        self._publish("certificate.deleted", row)
        self.session.delete(row)

    def _publish(self, type_: str, row: LbCertificate) -> None:
        events.publish(
            self.session,
            type_,
            "certificate",
            row.id,
            tenant_id=row.tenant_id,
            project_id=row.project_id,
            name=row.name,
            source=row.source,
        )
