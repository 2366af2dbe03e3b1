"""How one tenant's chunks and records are named and sealed.

A chunk's name is a keyed digest of its plaintext (HMAC-SHA256 or keyed BLAKE3 under the tenant's
id key): equal data of one tenant gets one name (deduplication), the same data of two tenants two
unrelated names. A sealed object is ``header | nonce | AEAD(zstd(plaintext))``; the header, the
tenant and the object's name are authenticated data, so a blob moved to another name or tenant, or
a flipped bit anywhere, fails to open.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

import blake3
import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from novacron.backup.keys import TenantKey

DIGESTS = ("sha256", "blake3")
AEADS = {"aes-256-gcm": 1, "chacha20-poly1305": 2}
_MAGIC = b"NCB1"
_FLAG_ZSTD = 1


class CorruptObject(ValueError):
    """A stored object failed authentication, decompression or its digest check."""


class Codec:
    def __init__(
        self, key: TenantKey, digest: str = "sha256", aead: str = "aes-256-gcm", level: int = 3
    ) -> None:
        if digest not in DIGESTS:
            raise ValueError(f"digest must be one of {', '.join(DIGESTS)}, not {digest!r}")
        if aead not in AEADS:
            raise ValueError(f"aead must be one of {', '.join(AEADS)}, not {aead!r}")
        self.key = key
        self.digest = digest
        self.aead_name = aead
        self._aead: AESGCM | ChaCha20Poly1305 = (
            AESGCM(key.enc_key) if aead == "aes-256-gcm" else ChaCha20Poly1305(key.enc_key)
        )
        self.level = level

    def chunk_id(self, data: bytes) -> str:
        if self.digest == "blake3":
            return blake3.blake3(data, key=self.key.id_key, max_threads=1).hexdigest()
        return hmac.new(self.key.id_key, data, hashlib.sha256).hexdigest()

    def _aad(self, header: bytes, name: str) -> bytes:
        return header + self.key.tenant_id.encode() + b"\0" + name.encode()

    def seal(self, name: str, data: bytes) -> bytes:
        packed = zstandard.ZstdCompressor(level=self.level).compress(data)
        flags = 0
        if len(packed) < len(data):
            data, flags = packed, _FLAG_ZSTD
        header = _MAGIC + bytes([flags, AEADS[self.aead_name]])
        nonce = secrets.token_bytes(12)
        return header + nonce + self._aead.encrypt(nonce, data, self._aad(header, name))

    def open(self, name: str, blob: bytes) -> bytes:
        header, nonce, body = blob[:6], blob[6:18], blob[18:]
        if header[:4] != _MAGIC or len(header) < 6 or header[5] != AEADS[self.aead_name]:
            raise CorruptObject(f"{name}: not a sealed object of this store")
        try:
            data = self._aead.decrypt(nonce, body, self._aad(header, name))
        except InvalidTag:
            raise CorruptObject(f"{name}: authentication failed (corrupted or tampered)") from None
        if header[4] & _FLAG_ZSTD:
            try:
                data = zstandard.ZstdDecompressor().decompress(data)
            except zstandard.ZstdError as e:
                raise CorruptObject(f"{name}: {e}") from None
        return data

    def open_chunk(self, chunk_id: str, blob: bytes) -> bytes:
        """The chunk's plaintext, checked against its name (the digest check of verify)."""
        data = self.open(chunk_id, blob)
        if not hmac.compare_digest(self.chunk_id(data), chunk_id):
            raise CorruptObject(f"{chunk_id}: content does not match its digest")
        return data

    def seal_record(self, name: str, record: dict[str, Any]) -> bytes:
        return self.seal(name, json.dumps(record, separators=(",", ":")).encode())

    def open_record(self, name: str, blob: bytes) -> dict[str, Any]:
        record: dict[str, Any] = json.loads(self.open(name, blob))
        return record
