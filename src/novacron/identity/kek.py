"""The platform's key-encryption keys (KEKs): one service, three places a KEK can live.

Everything secret the platform stores is encrypted under a data key, and data keys are stored
wrapped by a KEK (envelope encryption, as KMS does): the database or a backup target alone never
opens anything. :class:`KeyService` is the one KEK service of the platform; the backup keyring
(``backup/keys.py``) and the encryption service of the database (``identity/encryption.py``) both
wrap through it. Where the KEK lives is a provider:

- ``file`` (default): 32 random bytes per KEK, one file per id (mode 0600) in ``<state_dir>/kek/``
  with a ``current`` file naming the one that wraps. Wrapping is AES-256-GCM in this process.
- ``pkcs11``: an AES-256 key generated inside a PKCS#11 token (an HSM, or SoftHSM), never
  extractable; wrapping is ``C_Encrypt`` with ``CKM_AES_GCM`` in the token.
- ``vault``: a HashiCorp Vault (or OpenBao) transit key; wrapping is ``transit/encrypt`` with a
  derived key (the context goes into the derivation), rotation is Vault's own key versions.

A wrapped key is a small dict that names its KEK (``kek``) and algorithm, so keys wrapped by any
provider can be unwrapped as long as that provider is configured; the file provider always is
when its directory exists, which is how an install moves from the file to an HSM (configure the
new provider, rotate: everything is re-wrapped under it; then retire the old KEKs).
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import threading
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def check_id(kind: str, value: str) -> str:
    """``value`` when it is safe as one file or object name (a KEK file, a tenant's key object)."""
    if not _ID.match(value) or value in (".", ".."):
        raise ValueError(f"invalid {kind} {value!r}: use 1-128 of A-Z a-z 0-9 . _ -")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class KEKProvider(Protocol):
    """Where KEKs live; ``wrap``/``unwrap`` run where the KEK is (this process, an HSM, Vault)."""

    kind: str

    def current_id(self) -> str: ...
    def kek_ids(self) -> list[str]: ...
    def rotate(self) -> str: ...
    def retire(self, kek_id: str) -> None: ...
    def wrap(self, key: bytes, context: str) -> dict[str, str]: ...
    def unwrap(self, wrapped: dict[str, str], context: str) -> bytes: ...
    def owns(self, kek_id: str) -> bool: ...


class FileKEK:
    """KEKs as files of a private directory (the default provider)."""

    kind = "file"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.dir, 0o700)
        self._lock = threading.Lock()
        if not (self.dir / "current").exists():
            self.rotate()

    def owns(self, kek_id: str) -> bool:
        return kek_id.startswith("kek-")

    def current_id(self) -> str:
        return (self.dir / "current").read_text().strip()

    def kek_ids(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.kek"))

    def _kek(self, kek_id: str) -> bytes:
        check_id("KEK id", kek_id)
        try:
            return (self.dir / f"{kek_id}.kek").read_bytes()
        except FileNotFoundError:
            raise KeyError(f"key-encryption key {kek_id!r} is not in {self.dir}") from None

    def rotate(self) -> str:
        with self._lock:
            kek_id = "kek-" + secrets.token_hex(8)
            fd = os.open(self.dir / f"{kek_id}.kek", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
            tmp = self.dir / "current.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(kek_id + "\n")
            os.replace(tmp, self.dir / "current")
            return kek_id

    def retire(self, kek_id: str) -> None:
        (self.dir / f"{check_id('KEK id', kek_id)}.kek").unlink(missing_ok=True)

    def wrap(self, key: bytes, context: str) -> dict[str, str]:
        kek_id = self.current_id()
        nonce = secrets.token_bytes(12)
        ct = AESGCM(self._kek(kek_id)).encrypt(nonce, key, context.encode())
        return {"kek": kek_id, "alg": "AES-256-GCM", "nonce": _b64(nonce), "ct": _b64(ct)}

    def unwrap(self, wrapped: dict[str, str], context: str) -> bytes:
        aes = AESGCM(self._kek(wrapped["kek"]))
        return aes.decrypt(
            base64.b64decode(wrapped["nonce"]), base64.b64decode(wrapped["ct"]), context.encode()
        )


class KeyService:
    """The platform's KEK service: wraps with the configured provider, unwraps with whichever
    provider a wrapped key names (the file directory stays readable after a move to an HSM)."""

    def __init__(
        self, directory: str | os.PathLike[str] | None = None, *, provider: KEKProvider | None = None
    ) -> None:
        if provider is None:
            if directory is None:
                raise ValueError("a KeyService needs a KEK directory or a provider")
            provider = FileKEK(directory)
        self.provider = provider
        self.dir = Path(directory) if directory is not None else None
        self._fallback: FileKEK | None = None
        if directory is not None and not isinstance(provider, FileKEK) and Path(directory).is_dir():
            self._fallback = FileKEK(directory)  # KEKs from before the move to the HSM/Vault

    @classmethod
    def for_state_dir(cls, state_dir: str | os.PathLike[str]) -> KeyService:
        """The file KEKs of a state dir (``kek/``; older installs kept them in ``backup-keys/``)."""
        return cls(kek_dir(Path(state_dir)))

    @property
    def kind(self) -> str:
        return self.provider.kind

    @property
    def current_id(self) -> str:
        return self.provider.current_id()

    def kek_ids(self) -> list[str]:
        ids = set(self.provider.kek_ids())
        if self._fallback is not None:
            ids |= set(self._fallback.kek_ids())
        return sorted(ids)

    def rotate(self) -> str:
        """Make a new KEK the one that wraps from now on; returns its id."""
        return self.provider.rotate()

    def retire(self, kek_id: str) -> None:
        """Delete an old KEK (after every key it wrapped was re-wrapped)."""
        if kek_id == self.current_id:
            raise ValueError("the current key-encryption key cannot be retired")
        self._owner(kek_id).retire(kek_id)

    def retire_unused(self, candidates: list[str], in_use: set[str]) -> tuple[list[str], list[str]]:
        """Retire every candidate no stored key is wrapped under; returns (retired, kept).

        A Vault version is retired by raising the key's minimum decryption version, which
        disables every version below it too: one below a version still in use is kept."""
        retired: list[str] = []
        for kek_id in candidates:
            if kek_id in in_use or any(_disables(kek_id, used) for used in in_use):
                continue
            self.retire(kek_id)
            retired.append(kek_id)
        return retired, [k for k in candidates if k not in retired]

    def _owner(self, kek_id: str) -> KEKProvider:
        if self.provider.owns(kek_id):
            return self.provider
        if self._fallback is not None and self._fallback.owns(kek_id):
            return self._fallback
        raise KeyError(f"key-encryption key {kek_id!r} belongs to no configured KEK provider")

    def wrap(self, key: bytes, context: str) -> dict[str, str]:
        """Encrypt a data key under the current KEK, bound to ``context`` (e.g. the tenant id)."""
        return self.provider.wrap(key, context)

    def unwrap(self, wrapped: dict[str, str], context: str) -> bytes:
        return self._owner(wrapped["kek"]).unwrap(wrapped, context)


_VAULT_ID = re.compile(r"^vault:(?P<key>.+):v(?P<version>[0-9]+)$")


def _disables(retired: str, other: str) -> bool:
    """Whether retiring KEK ``retired`` also makes ``other`` unusable (Vault versions below it)."""
    a, b = _VAULT_ID.match(retired), _VAULT_ID.match(other)
    return bool(a and b and a["key"] == b["key"] and int(b["version"]) <= int(a["version"]))


def kek_dir(state_dir: Path) -> Path:
    """``<state_dir>/kek``, moved there from ``backup-keys/`` where older installs kept it."""
    new, old = state_dir / "kek", state_dir / "backup-keys"
    if not new.exists() and old.is_dir():
        os.replace(old, new)
    return new


def make_key_service(settings: Any) -> KeyService:
    """The KEK service a process's settings configure (``NOVACRON_KEK_PROVIDER``; the file KEKs'
    directory is ``NOVACRON_KEK_DIR``, default ``<state_dir>/kek``: replicas of one control
    plane share it, as they share the database)."""
    shared = dict(settings.kek_options).get("dir")
    directory = Path(shared) if shared else kek_dir(Path(settings.state_dir))
    kind = settings.kek_provider
    if kind == "file":
        return KeyService(directory)
    if kind not in ("pkcs11", "vault"):
        raise KEKUnavailable(f"NOVACRON_KEK_PROVIDER must be file, pkcs11 or vault, not {kind!r}")
    try:
        return KeyService(directory, provider=_remote_provider(kind, settings))
    except Exception as exc:
        # an HSM or Vault that is down, a wrong PIN or token: one line that says which and why
        # (not a traceback at every restart), without the PIN or token the message might echo
        reason = f"{type(exc).__name__}: {exc}"
        for name, value in settings.kek_options:
            if name in ("vault_token", "pkcs11_pin") and len(value) >= 4:
                reason = reason.replace(value, "***")
        raise KEKUnavailable(
            f"the {kind} key-encryption key is unavailable, so no stored secret can be opened ({reason}); "
            "check the NOVACRON_KEK_* settings and that the "
            f"{'PKCS#11 token' if kind == 'pkcs11' else 'Vault server'} is reachable"
        ) from exc


def _remote_provider(kind: str, settings: Any) -> KEKProvider:
    if kind == "pkcs11":
        from novacron.identity.kek_remote import PKCS11KEK

        return PKCS11KEK.from_settings(settings)
    from novacron.identity.kek_remote import VaultKEK

    return VaultKEK.from_settings(settings)


class KEKUnavailable(RuntimeError):
    """The configured KEK provider cannot be used (unreachable, misconfigured, refused)."""


_services: dict[tuple[Any, ...], KeyService] = {}
_services_lock = threading.Lock()


def key_service(settings: Any) -> KeyService:
    """One KeyService per configuration in a process (an HSM session or Vault client is costly)."""
    key = (str(settings.state_dir), settings.kek_provider, settings.kek_options)
    with _services_lock:
        service = _services.get(key)
        if service is None:
            service = _services[key] = make_key_service(settings)
        return service
