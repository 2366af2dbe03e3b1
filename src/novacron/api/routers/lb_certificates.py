"""/v1/certificates: load balancers' TLS certificates (Octavia keeps them in Barbican).

A certificate is uploaded (PEM certificate and chain with its key, or PKCS#12) or ordered from an
ACME directory (``acme``: then it is ``PENDING`` until the task in ``task_id`` issues it, and it
is renewed before it expires). Listeners name it in ``default_tls_container_ref`` /
``sni_container_refs``. The private key and the PKCS#12 file are write-only: no answer holds them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import LbCertificate
from novacron.lbaas.acme_service import AcmeOrder
from novacron.lbaas.certstore import MAX_UPLOAD, CertificateService, NewCertificate, Upload

router = APIRouter(prefix="/v1/certificates", tags=["load-balancers"])

CertReader = Annotated[
    CertificateService, Depends(service(CertificateService, "certificate:read", write=False))
]
CertWriter = Annotated[CertificateService, Depends(service(CertificateService, "certificate:write"))]
CertList = Annotated[ListParams, Depends(list_query(("created_at", "name", "not_after"), "name"))]

NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class AcmeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    names: list[Annotated[str, Field(max_length=253)]] = Field(
        min_length=1, max_length=100, description="DNS names the certificate is for (no wildcards: HTTP-01)"
    )
    loadbalancer_id: str = Field(
        max_length=40, description="your load balancer whose HTTP listener on port 80 serves these names"
    )
    directory_url: str | None = Field(
        default=None, max_length=512, description="the ACME directory (default: the operator's)"
    )


class CertificateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    description: str = Field(default="", max_length=255)
    project_id: str | None = Field(default=None, max_length=40)
    certificate: str | None = Field(
        default=None,
        max_length=MAX_UPLOAD,
        description="PEM: the certificate and its chain (may hold the key)",
    )
    private_key: str | None = Field(
        default=None, max_length=MAX_UPLOAD, description="PEM private key, unencrypted (write-only)"
    )
    pkcs12: str | None = Field(
        default=None, max_length=MAX_UPLOAD * 4 // 3 + 4, description="base64 PKCS#12 file (write-only)"
    )
    pkcs12_password: str | None = Field(
        default=None, max_length=1024, description="the PKCS#12 file's password"
    )
    acme: AcmeIn | None = Field(default=None, description="order it from an ACME directory instead")

    def spec(self) -> NewCertificate:
        upload = Upload(self.certificate, self.private_key, self.pkcs12, self.pkcs12_password)
        given = any(
            v is not None for v in (self.certificate, self.private_key, self.pkcs12, self.pkcs12_password)
        )
        acme = None
        if self.acme is not None:
            acme = AcmeOrder(tuple(self.acme.names), self.acme.loadbalancer_id, self.acme.directory_url)
        return NewCertificate(self.name, self.project_id, self.description, upload if given else None, acme)


class AcmeOut(BaseModel):
    names: list[str]
    directory_url: str
    loadbalancer_id: str


class CertificateOut(BaseModel):
    id: str
    name: str
    description: str
    project_id: str
    source: str = Field(description="upload or acme")
    status: str = Field(description="PENDING (ACME, not issued yet), ACTIVE, ERROR (issuance failed)")
    names: list[str] = Field(description="the DNS names clients select it by (SNI)")
    subject: str | None
    issuer: str | None
    serial: str | None
    fingerprint_sha256: str | None
    not_before: datetime | None
    not_after: datetime | None
    certificate: str | None = Field(description="PEM: the certificate and its chain (public)")
    acme: AcmeOut | None
    renew_after: datetime | None = Field(description="ACME: when it is renewed")
    last_error: str | None = Field(description="why the last issuance or renewal failed")
    task_id: str | None = Field(default=None, description="on create: the task issuing an ACME certificate")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: LbCertificate, task_id: str | None = None) -> CertificateOut:
        acme = None
        if row.acme_directory_url is not None and row.acme_loadbalancer_id is not None:
            acme = AcmeOut(
                names=list(row.acme_names or []),
                directory_url=row.acme_directory_url,
                loadbalancer_id=row.acme_loadbalancer_id,
            )
        return cls(
            id=row.id,
            name=row.name,
            description=row.description,
            project_id=row.project_id,
            source=row.source,
            status=row.status,
            names=list(row.names or []),
            subject=row.subject,
            issuer=row.issuer,
            serial=row.serial,
            fingerprint_sha256=row.fingerprint_sha256,
            not_before=row.not_before,
            not_after=row.not_after,
            certificate=row.certificate_pem,
            acme=acme,
            renew_after=row.renew_after,
            last_error=row.last_error,
            task_id=task_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@router.get("", response_model=Page[CertificateOut])
def list_certificates(
    certs: CertReader, page: CertList, name: str | None = None, project_id: str | None = None
) -> Page[CertificateOut]:
    rows, nxt = certs.list(page, name=name, project_id=project_id)
    return Page[CertificateOut](items=[CertificateOut.of(r) for r in rows], next_cursor=nxt)


@router.post("", status_code=201, response_model=CertificateOut)
def create_certificate(body: CertificateCreate, certs: CertWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    row, task_id = certs.create(body.spec())
    return idem.created(CertificateOut.of(row, task_id), row)


@router.get("/{certificate_id}", response_model=CertificateOut)
def get_certificate(certificate_id: str, response: Response, certs: CertReader) -> CertificateOut:
    row = certs.get(certificate_id)
    set_etag(response, row)
    return CertificateOut.of(row)


@router.delete("/{certificate_id}", status_code=204)
def delete_certificate(certificate_id: str, request: Request, certs: CertWriter) -> Response:
    row = certs.get(certificate_id)
    check_if_match(request, row)
    certs.delete(row)
    return Response(status_code=204)
