"""KEK providers outside this process: a PKCS#11 token (HSM) and HashiCorp Vault / OpenBao transit.

Both keep the KEK where this process cannot read it: the platform sends a data key to be wrapped
or unwrapped and gets the result, so a stolen state directory and database open nothing without
the HSM or Vault as well. Settings come from ``NOVACRON_KEK_*`` (``config.Settings.kek_options``).
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: PKCS#11 keys of the platform are labelled with this prefix and a sortable creation time
LABEL_PREFIX = "novacron-kek-"


def _option(settings: Any, name: str, default: str | None = None) -> str | None:
    options = dict(settings.kek_options)
    value = options.get(name)
    if value is None and (path := options.get(name + "_file")):
        value = Path(path).read_text().strip()  # secrets from a file rather than the environment
    return value if value is not None else default


def _required(settings: Any, name: str) -> str:
    value = _option(settings, name)
    if not value:
        raise ValueError(
            f"NOVACRON_KEK_{name.upper()} (or _{name.upper()}_FILE) is required for this KEK provider"
        )
    return value


class PKCS11KEK:
    """AES-256 KEKs generated in a PKCS#11 token, non-extractable; wrapping is CKM_AES_GCM."""

    kind = "pkcs11"

    def __init__(self, module: str, token_label: str, pin: str) -> None:
        import pkcs11

        self._pkcs11 = pkcs11
        self.token = pkcs11.lib(module).get_token(token_label=token_label)
        # one logged-in session for the process (a PKCS#11 login is per application: a second
        # session's login fails), used under a lock since modules differ in thread safety
        self._open = self.token.open(user_pin=pin, rw=True)
        self._lock = threading.Lock()
        if not self.kek_ids():
            self.rotate()

    @classmethod
    def from_settings(cls, settings: Any) -> PKCS11KEK:
        return cls(
            _option(settings, "pkcs11_module", "/usr/lib/softhsm/libsofthsm2.so") or "",
            _required(settings, "pkcs11_token"),
            _required(settings, "pkcs11_pin"),
        )

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        yield self._open

    def owns(self, kek_id: str) -> bool:
        return kek_id.startswith("pkcs11:")

    def _labels(self, session: Any) -> list[str]:
        from pkcs11 import Attribute, ObjectClass

        objs = session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
        return sorted(o.label for o in objs if str(o.label).startswith(LABEL_PREFIX))

    def kek_ids(self) -> list[str]:
        with self._lock, self._session() as s:
            return ["pkcs11:" + label for label in self._labels(s)]

    def current_id(self) -> str:
        ids = self.kek_ids()
        if not ids:
            raise KeyError("the PKCS#11 token holds no NovaCron key-encryption key")
        return ids[-1]  # labels sort by creation time: the newest wraps

    def rotate(self) -> str:
        from pkcs11 import Attribute, KeyType

        # nanoseconds since the epoch, zero-padded: labels sort in creation order
        label = f"{LABEL_PREFIX}{time.time_ns():020d}-{secrets.token_hex(4)}"
        template = {Attribute.EXTRACTABLE: False, Attribute.SENSITIVE: True, Attribute.TOKEN: True}
        with self._lock, self._session() as s:
            s.generate_key(KeyType.AES, 256, label=label, store=True, template=template)
        return "pkcs11:" + label

    def _key(self, session: Any, kek_id: str) -> Any:
        from pkcs11 import KeyType, ObjectClass
        from pkcs11.exceptions import NoSuchKey

        try:
            return session.get_key(
                label=kek_id.removeprefix("pkcs11:"),
                key_type=KeyType.AES,
                object_class=ObjectClass.SECRET_KEY,
            )
        except NoSuchKey:
            raise KeyError(f"key-encryption key {kek_id!r} is not in the PKCS#11 token") from None

    def retire(self, kek_id: str) -> None:
        with self._lock, self._session() as s:
            self._key(s, kek_id).destroy()

    def wrap(self, key: bytes, context: str) -> dict[str, str]:
        from pkcs11 import Mechanism
        from pkcs11.mechanisms import GCMParams

        kek_id = self.current_id()
        nonce = secrets.token_bytes(12)
        with self._lock, self._session() as s:
            ct = self._key(s, kek_id).encrypt(
                key, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, context.encode(), 128)
            )
        b64 = base64.b64encode
        return {
            "kek": kek_id,
            "alg": "PKCS11-AES-256-GCM",
            "nonce": b64(nonce).decode(),
            "ct": b64(ct).decode(),
        }

    def unwrap(self, wrapped: dict[str, str], context: str) -> bytes:
        from pkcs11 import Mechanism
        from pkcs11.mechanisms import GCMParams

        nonce = base64.b64decode(wrapped["nonce"])
        with self._lock, self._session() as s:
            return bytes(
                self._key(s, wrapped["kek"]).decrypt(
                    base64.b64decode(wrapped["ct"]),
                    mechanism=Mechanism.AES_GCM,
                    mechanism_param=GCMParams(nonce, context.encode(), 128),
                )
            )


class VaultKEK:
    """A Vault/OpenBao transit key; its versions are the KEKs (``vault:<name>:v<N>``)."""

    kind = "vault"

    def __init__(self, url: str, token: str, key: str = "novacron", mount: str = "transit",
                 verify: str | bool = True) -> None:  # fmt: skip
        import hvac

        self.client = hvac.Client(url=url, token=token, verify=verify)
        self.name, self.mount = key, mount
        try:
            self.client.secrets.transit.read_key(name=key, mount_point=mount)
        except hvac.exceptions.InvalidPath:
            # derived: the context (what the key is for) is part of the key, binding it like AAD
            self.client.secrets.transit.create_key(
                name=key, mount_point=mount, key_type="aes256-gcm96", derived=True
            )

    @classmethod
    def from_settings(cls, settings: Any) -> VaultKEK:
        cacert = _option(settings, "vault_cacert")
        return cls(
            _required(settings, "vault_url"),
            _required(settings, "vault_token"),
            _option(settings, "vault_key", "novacron") or "novacron",
            _option(settings, "vault_mount", "transit") or "transit",
            cacert or True,
        )

    def owns(self, kek_id: str) -> bool:
        return kek_id.startswith(f"vault:{self.name}:v")

    def _info(self) -> dict[str, Any]:
        data: dict[str, Any] = self.client.secrets.transit.read_key(name=self.name, mount_point=self.mount)[
            "data"
        ]
        return data

    def kek_ids(self) -> list[str]:
        info = self._info()
        low = int(info.get("min_decryption_version") or 1)
        return [f"vault:{self.name}:v{v}" for v in range(low, int(info["latest_version"]) + 1)]

    def current_id(self) -> str:
        return f"vault:{self.name}:v{self._info()['latest_version']}"

    def rotate(self) -> str:
        self.client.secrets.transit.rotate_key(name=self.name, mount_point=self.mount)
        return self.current_id()

    def retire(self, kek_id: str) -> None:
        """Vault retires versions from the bottom: nothing at or below this one decrypts any more."""
        version = int(kek_id.rsplit(":v", 1)[1])
        info = self._info()
        if version + 1 > int(info.get("min_decryption_version") or 1):
            self.client.secrets.transit.update_key_configuration(
                name=self.name, mount_point=self.mount, min_decryption_version=version + 1
            )

    def wrap(self, key: bytes, context: str) -> dict[str, str]:
        r = self.client.secrets.transit.encrypt_data(
            name=self.name,
            mount_point=self.mount,
            plaintext=base64.b64encode(key).decode(),
            context=base64.b64encode(context.encode()).decode(),
        )["data"]
        return {
            "kek": f"vault:{self.name}:v{r['key_version']}",
            "alg": "vault-transit",
            "ct": r["ciphertext"],
        }

    def unwrap(self, wrapped: dict[str, str], context: str) -> bytes:
        r = self.client.secrets.transit.decrypt_data(
            name=self.name,
            mount_point=self.mount,
            ciphertext=wrapped["ct"],
            context=base64.b64encode(context.encode()).decode(),
        )["data"]
        return base64.b64decode(r["plaintext"])
