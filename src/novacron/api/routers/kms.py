"""/v1/kms: the tenants' key service: keys, their life cycle, and the cryptographic operations.

Bytes travel as standard base64 (``plaintext``, ``aad``). Creating, rotating and the life-cycle
changes take an ``Idempotency-Key``; the cryptographic operations are not remembered (a replay
would have to keep a plaintext), and retrying them is harmless: encrypt again gives another
ciphertext of the same plaintext, the others give the same answer.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.deps import IdempotencyDep, service
from novacron.api.listing import Page, list_query
from novacron.db.listing import ListParams
from novacron.db.models import KmsKey
from novacron.errors import InvalidInput
from novacron.identity.kms import ALGORITHMS, KeySpec, KmsService

router = APIRouter(prefix="/v1/kms", tags=["kms"])

KeyReader = Annotated[KmsService, Depends(service(KmsService, "kms:read", write=False))]
KeyUser = Annotated[KmsService, Depends(service(KmsService, "kms:use", write=False))]
KeyWriter = Annotated[KmsService, Depends(service(KmsService, "kms:write"))]
KeyList = Annotated[ListParams, Depends(list_query(("name", "created_at"), "name"))]

NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"
B64 = Field(default="", max_length=90_000, description="standard base64")
ALGORITHM = "^(" + "|".join(ALGORITHMS) + ")$"


def _bytes(value: str, field: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(field, "not standard base64") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME)
    #: aes-256-gcm or chacha20-poly1305
    algorithm: str = Field("aes-256-gcm", pattern=ALGORITHM)
    description: str = Field("", max_length=255)
    #: the tenant (id or name) a platform administrator makes the key for; others: their own
    tenant: str | None = Field(None, max_length=64)


class KeyOut(BaseModel):
    id: str
    tenant_id: str
    name: str
    description: str
    algorithm: str
    #: enabled, disabled, pending-deletion or destroyed
    state: str
    #: the version new ciphertexts are made with; every older one still decrypts
    primary_version: int
    #: tenant (made through the API) or backup (wraps the tenant's backup key)
    purpose: str
    created_at: datetime
    rotated_at: datetime | None
    deletion_at: datetime | None
    destroyed_at: datetime | None

    @classmethod
    def of(cls, k: KmsKey) -> KeyOut:
        return cls(
            id=k.id,
            tenant_id=k.tenant_id,
            name=k.name,
            description=k.description,
            algorithm=k.algorithm,
            state=k.state,
            primary_version=k.primary_version,
            purpose=k.purpose,
            created_at=k.created_at,
            rotated_at=k.rotated_at,
            deletion_at=k.deletion_at,
            destroyed_at=k.destroyed_at,
        )


class DeletionSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: days until the key is destroyed (cancellable until then)
    days: int = Field(7, ge=1, le=30)


class EncryptIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: the key's id or name
    key: str = Field(min_length=1, max_length=64)
    plaintext: str = B64
    #: associated data: the same must be given to decrypt
    aad: str = B64


class CiphertextIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: ``kms1:<key id>:<version>:<data>``
    ciphertext: str = Field(min_length=1, max_length=120_000)
    aad: str = B64


class DataKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=64)
    #: the data key's size in bytes
    bytes: int = Field(32, ge=16, le=64)
    aad: str = B64


class CiphertextOut(BaseModel):
    key_id: str
    version: int
    ciphertext: str


class PlaintextOut(BaseModel):
    key_id: str
    version: int
    #: base64
    plaintext: str


class DataKeyOut(CiphertextOut):
    #: base64: use it, then forget it; keep the ciphertext and decrypt it when needed again
    plaintext: str


@router.post("/keys", status_code=201, response_model=KeyOut)
def create_key(body: KeyCreate, keys: KeyWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    key = keys.create(KeySpec(body.name, body.algorithm, body.description, body.tenant))
    return _answer(idem, key, 201)


@router.get("/keys", response_model=Page[KeyOut])
def list_keys(keys: KeyReader, page: KeyList) -> Page[KeyOut]:
    rows, nxt = keys.list(page)
    return Page[KeyOut](items=[KeyOut.of(k) for k in rows], next_cursor=nxt)


@router.get("/keys/{key}", response_model=KeyOut)
def get_key(key: str, keys: KeyReader) -> KeyOut:
    return KeyOut.of(keys.get(key))


def _answer(idem: IdempotencyDep, key: KmsKey, status: int = 200) -> Response:
    """The key as answered, remembered for a retry with the same Idempotency-Key."""
    out = KeyOut.of(key).model_dump(mode="json")
    idem.remember(status, out)
    return JSONResponse(out, status_code=status)


@router.post("/keys/{key}/rotate", response_model=KeyOut)
def rotate_key(key: str, keys: KeyWriter, idem: IdempotencyDep) -> Response:
    """A new primary version (needs a second-factor code verified lately, when you have one)."""
    if (replay := idem.replay({})) is not None:
        return replay
    return _answer(idem, keys.rotate(key))


@router.post("/keys/{key}/disable", response_model=KeyOut)
def disable_key(key: str, keys: KeyWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay({})) is not None:
        return replay
    return _answer(idem, keys.set_enabled(key, False))


@router.post("/keys/{key}/enable", response_model=KeyOut)
def enable_key(key: str, keys: KeyWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay({})) is not None:
        return replay
    return _answer(idem, keys.set_enabled(key, True))


@router.post("/keys/{key}/schedule-deletion", response_model=KeyOut)
def schedule_key_deletion(
    key: str, body: DeletionSchedule, keys: KeyWriter, idem: IdempotencyDep
) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    return _answer(idem, keys.schedule_deletion(key, body.days))


@router.post("/keys/{key}/cancel-deletion", response_model=KeyOut)
def cancel_key_deletion(key: str, keys: KeyWriter, idem: IdempotencyDep) -> Response:
    if (replay := idem.replay({})) is not None:
        return replay
    return _answer(idem, keys.cancel_deletion(key))


@router.post("/keys/{key}/shred", response_model=KeyOut)
def shred_key(key: str, keys: KeyWriter, idem: IdempotencyDep) -> Response:
    """Destroy the key's material now: everything it encrypted, the tenant's backups too when it
    is the backup key, is unreadable for ever (needs a recent second-factor code)."""
    if (replay := idem.replay({})) is not None:
        return replay
    return _answer(idem, keys.shred(key))


@router.post("/encrypt", response_model=CiphertextOut)
def encrypt(body: EncryptIn, keys: KeyUser) -> CiphertextOut:
    ct = keys.encrypt(body.key, _bytes(body.plaintext, "plaintext"), _bytes(body.aad, "aad"))
    key_id, version = ct.split(":")[1:3]
    return CiphertextOut(key_id=key_id, version=int(version), ciphertext=ct)


@router.post("/decrypt", response_model=PlaintextOut)
def decrypt(body: CiphertextIn, keys: KeyUser) -> PlaintextOut:
    key, version, plaintext = keys.decrypt(body.ciphertext, _bytes(body.aad, "aad"))
    return PlaintextOut(key_id=key.id, version=version, plaintext=_b64(plaintext))


@router.post("/data-keys", response_model=DataKeyOut)
def generate_data_key(body: DataKeyIn, keys: KeyUser) -> DataKeyOut:
    plaintext, ct = keys.generate_data_key(body.key, body.bytes, _bytes(body.aad, "aad"))
    key_id, version = ct.split(":")[1:3]
    return DataKeyOut(key_id=key_id, version=int(version), ciphertext=ct, plaintext=_b64(plaintext))


@router.post("/rewrap", response_model=CiphertextOut)
def rewrap(body: CiphertextIn, keys: KeyUser) -> CiphertextOut:
    """The ciphertext under the key's latest version; the plaintext never leaves the service."""
    key, ct = keys.rewrap(body.ciphertext, _bytes(body.aad, "aad"))
    return CiphertextOut(key_id=key.id, version=key.primary_version, ciphertext=ct)
