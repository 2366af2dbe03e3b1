"""The encryption service: secrets at rest in the database, sealed under envelope encryption.

A sealed value is ``nce1:`` + base64url(JSON ``{"w": wrapped data key, "n": nonce, "c": ct}``):
a fresh AES-256-GCM data key per value encrypts it, and the KEK service (``identity/kek.py``)
wraps that data key; the wrapped key names its KEK, and ``nce1`` is the format version. The
associated data names where the value belongs (``signing_keys.private_pem:<kid>``), so a
ciphertext copied into another row or column does not open. Rotation re-wraps only the data key.

Credentials inside JSON settings (backup-target configuration) are sealed field by field: the
fields whose names say they are secret (:func:`is_secret_field`); the others stay readable so the
API can show them. The API never returns a secret field's value: :func:`redact` shows ``"***"``.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from typing import Any, TypeGuard

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from novacron.identity.kek import KeyService, key_service

PREFIX = "nce1:"
MASK = "***"
#: a configuration field is a secret when its name says so (``aws_secret_access_key``,
#: ``connection_string``, ``account_key``, ``credentials``, ``password``, ``sas_token``, ...)
_SECRET_FIELD = re.compile(
    r"secret|passw|token|connection_string|account_key|credential|private_key|api_key"
    r"|(^|_)sas(_|$)|(^|_)auth(_|$)|authorization",
    re.I,
)


def is_secret_field(name: str) -> bool:
    return bool(_SECRET_FIELD.search(name))


def is_sealed(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value.startswith(PREFIX)


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class EncryptionService:
    """Seal and open values under per-value data keys wrapped by the platform KEK."""

    def __init__(self, keys: KeyService) -> None:
        self.keys = keys

    def seal(self, plaintext: bytes, aad: str) -> str:
        dek = AESGCM.generate_key(bit_length=256)
        nonce = secrets.token_bytes(12)
        ct = AESGCM(dek).encrypt(nonce, plaintext, aad.encode())
        body = {"w": self.keys.wrap(dek, "dek:" + aad), "n": _b64u(nonce), "c": _b64u(ct)}
        return PREFIX + _b64u(json.dumps(body, separators=(",", ":")).encode())

    @staticmethod
    def _parse(token: str) -> dict[str, Any]:
        if not is_sealed(token):
            raise ValueError("not a sealed value")
        body: dict[str, Any] = json.loads(_unb64u(token[len(PREFIX) :]))
        return body

    def open(self, token: str, aad: str) -> bytes:
        body = self._parse(token)
        dek = self.keys.unwrap(body["w"], "dek:" + aad)
        return AESGCM(dek).decrypt(_unb64u(body["n"]), _unb64u(body["c"]), aad.encode())

    def seal_text(self, text: str, aad: str) -> str:
        return self.seal(text.encode(), aad)

    def open_text(self, value: str, aad: str) -> str:
        """The clear text of a sealed value; a value from before encryption is returned as it is
        (start-up and the migration seal those, see ``identity/sealing.py``)."""
        return self.open(value, aad).decode() if is_sealed(value) else value

    @staticmethod
    def kek_of(token: str) -> str:
        return str(EncryptionService._parse(token)["w"]["kek"])

    def rewrap(self, token: str, aad: str) -> str | None:
        """The same value with its data key re-wrapped under the current KEK; None if it already is."""
        body = self._parse(token)
        if body["w"]["kek"] == self.keys.current_id:
            return None
        dek = self.keys.unwrap(body["w"], "dek:" + aad)
        body["w"] = self.keys.wrap(dek, "dek:" + aad)
        return PREFIX + _b64u(json.dumps(body, separators=(",", ":")).encode())

    # -- JSON settings with secret fields ------------------------------------------------------

    def seal_fields(self, config: dict[str, Any], aad: str) -> dict[str, Any]:
        """``config`` with every secret field's value sealed (bound to ``aad`` and the field)."""
        out = dict(config)
        for name, value in config.items():
            if is_secret_field(name) and value is not None and not is_sealed(value):
                out[name] = self.seal(json.dumps(value).encode(), f"{aad}:{name}")
        return out

    def open_fields(self, config: dict[str, Any], aad: str) -> dict[str, Any]:
        out = dict(config)
        for name, value in config.items():
            if is_sealed(value):
                out[name] = json.loads(self.open(value, f"{aad}:{name}"))
        return out

    def rewrap_fields(self, config: dict[str, Any], aad: str) -> dict[str, Any] | None:
        out, changed = dict(config), False
        for name, value in config.items():
            if is_sealed(value) and (new := self.rewrap(value, f"{aad}:{name}")) is not None:
                out[name], changed = new, True
        return out if changed else None


def redact(config: dict[str, Any]) -> dict[str, Any]:
    """What the API may show of a configuration: every secret field's value is ``***``."""
    return {k: (MASK if is_secret_field(k) and v is not None else v) for k, v in config.items()}


def secrets_set(config: dict[str, Any]) -> list[str]:
    """The names of the secret fields that hold a value (so a user can tell one is configured)."""
    return sorted(k for k, v in config.items() if is_secret_field(k) and v is not None)


def scrub(text: str, config: dict[str, Any]) -> str:
    """``text`` (an error message) with every secret value of ``config`` in it masked."""
    for name, value in config.items():
        if is_secret_field(name) and value is not None and not is_sealed(value):
            for piece in {json.dumps(value), str(value)} if not isinstance(value, str) else {value}:
                if len(piece) >= 4:
                    text = text.replace(piece, MASK)
    return text


def encryption_for(settings: Any) -> EncryptionService:
    """The encryption service of a process's settings (its KEK service is shared)."""
    return EncryptionService(key_service(settings))
