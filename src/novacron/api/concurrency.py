"""ETags and ``If-Match`` for updates; ``Idempotency-Key`` for creates."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.api.errors import Problem
from novacron.api.openapi import raises
from novacron.db.models import IdempotencyRecord
from novacron.identity.encryption import is_secret_field
from novacron.identity.principal import Principal


def etag_of(resource: Any) -> str:
    return f'"{resource.id}.v{resource.version}"'


def set_etag(response: Response, resource: Any) -> None:
    response.headers["ETag"] = etag_of(resource)


@raises(412, header="If-Match")
def check_if_match(request: Request, resource: Any) -> None:
    """412 when the client edited a copy older than what is stored now."""
    refuse_stale(request.headers.get("if-match"), resource)


def refuse_stale(expected: str | None, resource: Any) -> None:
    """412 unless ``expected`` (an ``If-Match`` value, or GraphQL's ``ifMatch``) names ``resource``
    as it is now, or is absent or ``*``."""
    if expected is None or expected.strip() == "*":
        return
    candidates = {tag.strip().removeprefix("W/") for tag in expected.split(",")}
    if etag_of(resource) not in candidates:
        raise Problem(
            412,
            "Precondition Failed",
            f"The resource changed since you read it (now {etag_of(resource)}); GET it again and retry.",
        )


def _without_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "***" if is_secret_field(str(k)) else _without_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value


@raises(400, 422, header="Idempotency-Key")
class Idempotency:
    """The first response to a keyed request is stored in the same transaction as its effect.

    A retry with the same key gets that response again; the same key with a
    different body is refused, so a client bug cannot silently change meaning.
    """

    def __init__(self, request: Request, principal: Principal, session: Session, body: Any = None) -> None:
        key = request.headers.get("idempotency-key")
        self._keyed(key, principal, session, request.method, request.url.path)
        if body is not None:
            self.bind(body)

    @classmethod
    def of_call(cls, key: str | None, principal: Principal, session: Session, path: str) -> Idempotency:
        """A key given another way than the header: a GraphQL mutation's ``idempotencyKey``, for the
        call ``path`` names (``/v1/graphql#createVm``)."""
        self = cls.__new__(cls)
        self._keyed(key, principal, session, "POST", path)
        return self

    def _keyed(self, key: str | None, principal: Principal, session: Session, method: str, path: str) -> None:
        self.key = key
        self.session = session
        self.principal = principal
        self.method = method
        self.path = path
        self.request_hash = ""
        if self.key is not None and not 1 <= len(self.key) <= 255:
            raise Problem(
                400,
                "Invalid request",
                "Idempotency-Key must be 1 to 255 characters",
                errors=[{"field": "header.Idempotency-Key", "reason": "must be 1 to 255 characters"}],
            )

    def bind(self, body: Any) -> None:
        """Fingerprint the request this key stands for: its method, path and body."""
        payload = body.model_dump(mode="json") if hasattr(body, "model_dump") else body
        # a password or credential in the body must not be kept as an unsalted hash (guessable
        # offline): the hash covers everything else, so a retry with another secret is replayed
        payload = _without_secrets(payload)
        self.request_hash = hashlib.sha256(
            json.dumps([self.method, self.path, payload], sort_keys=True).encode()
        ).hexdigest()

    def replay(self, body: Any = None) -> JSONResponse | None:
        """The stored answer when this key was used before (``body``: the request, if not bound yet)."""
        if body is not None:
            self.bind(body)
        if self.key is None:
            return None
        record = self.session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.principal_id == self.principal.user_id,
                IdempotencyRecord.key == self.key,
            )
        )
        if record is None:
            return None
        if record.request_hash != self.request_hash:
            raise Problem(
                422,
                "Idempotency key reused",
                "This Idempotency-Key was already used for a different request; use a new key.",
                errors=[{"field": "header.Idempotency-Key", "reason": "already used with another body"}],
            )
        return JSONResponse(
            json.loads(record.response_body),
            status_code=record.status_code,
            headers={"Idempotent-Replayed": "true"},
        )

    def remember(self, status_code: int, body: Any) -> None:
        if self.key is None:
            return
        self.session.add(
            IdempotencyRecord(
                principal_id=self.principal.user_id,
                key=self.key,
                method=self.method,
                path=self.path,
                request_hash=self.request_hash,
                status_code=status_code,
                response_body=json.dumps(body, default=str),
            )
        )

    def created(self, out: BaseModel, resource: Any) -> JSONResponse:
        """The 201 answer to a create (remembered for a retry with the same key), with its ETag."""
        payload = out.model_dump(mode="json")
        self.remember(201, payload)
        return JSONResponse(payload, status_code=201, headers={"ETag": etag_of(resource)})
