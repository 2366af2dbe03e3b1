"""Tenant secrets: values encrypted under one of the tenant's keys, handed to its VMs by cloud-init.

A secret (``tenant_secrets``) is a name, the key that encrypts it (``identity/kms.py``; the
associated data is the secret's id, so a ciphertext moved to another secret does not open), and
the path where a guest finds it. The API takes the value and never gives it back (write-only,
like every credential of the platform): reading a secret shows its name, key, path and dates.

A VM created with ``secrets: [name, ...]`` (``vm_secrets``) gets them at every boot: the step that
prepares its instance decrypts them and hands the agent a cloud-init **vendor-data** part
(``#cloud-config`` with ``write_files``, mode 0600, base64) under the host operation's sealed
``secrets`` (``compute/hostops.py``), which is dropped from the database once the agent answered;
the agent writes it into the seed ISO (mode 0600) next to the user's own user-data, which stays
as the user wrote it. A secret whose key is disabled or destroyed fails the VM's start with the
reason, never a guest booted without it.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from novacron import events
from novacron.db.base import Database, new_id
from novacron.db.listing import ListParams, paginate
from novacron.db.models import VM, KmsKey, TenantSecret, VmSecret
from novacron.errors import InvalidInput, NotFound
from novacron.identity.encryption import EncryptionService
from novacron.identity.kms import KeyCrypto, KeySpec, KmsService, parse
from novacron.identity.scoping import duplicate, flush_unique

MAX_VALUE = 32 * 1024
#: where a secret lands in the guest unless told otherwise
DEFAULT_DIR = "/run/novacron/secrets"
_PATH = re.compile(r"^/[A-Za-z0-9._/-]{1,254}$")


def secret_aad(secret_id: str) -> bytes:
    return f"tenant_secrets.value:{secret_id}".encode()


@dataclass(frozen=True)
class SecretSpec:
    name: str
    value: bytes
    #: the key (id or name) that encrypts it; omitted: the tenant's key named ``secrets``, made
    key: str | None = None
    path: str | None = None
    tenant: str | None = None


class SecretService(KmsService):
    """The tenant's secrets: ``kms:read`` lists them (never their values), ``secret:write`` sets them."""

    def list_secrets(self, params: ListParams) -> tuple[list[TenantSecret], str | None]:
        stmt = select(TenantSecret)
        if not self.principal.is_global:
            stmt = stmt.where(TenantSecret.tenant_id == self.principal.tenant_id)
        return paginate(self.session, stmt, TenantSecret, params)

    def get_secret(self, ref: str) -> TenantSecret:
        stmt = select(TenantSecret)
        if not self.principal.is_global:
            stmt = stmt.where(TenantSecret.tenant_id == self.principal.tenant_id)
        row = self.session.scalar(stmt.where(TenantSecret.id == ref)) or self.session.scalar(
            stmt.where(TenantSecret.name == ref).limit(1)
        )
        if row is None:
            raise NotFound("secret", ref)
        return row

    def create_secret(self, spec: SecretSpec) -> TenantSecret:
        if len(spec.value) > MAX_VALUE:
            raise InvalidInput("value", f"larger than {MAX_VALUE} bytes")
        path = spec.path or f"{DEFAULT_DIR}/{spec.name}"
        if not _PATH.match(path) or "/../" in path + "/":
            raise InvalidInput("path", "an absolute path of A-Z a-z 0-9 . _ - / (no ..)")
        tenant_id = self._tenant_of(spec.tenant)
        if self.session.scalar(
            select(TenantSecret.id).where(TenantSecret.tenant_id == tenant_id, TenantSecret.name == spec.name)
        ):
            raise duplicate("name", spec.name, "secret")
        key = self._secret_key(tenant_id, spec.key)
        row = TenantSecret(id=new_id("sec"), tenant_id=tenant_id, name=spec.name, key_id=key.id, path=path)
        row.ciphertext = self.crypto.encrypt(self._usable(key), spec.value, secret_aad(row.id))
        self.session.add(row)
        flush_unique(self.session, "name", spec.name, "secret")
        events.publish(self.session, "secret.created", "secret", row.id, tenant_id=tenant_id, name=row.name)
        return row

    def _secret_key(self, tenant_id: str, ref: str | None) -> KmsKey:
        if ref is not None:
            key = self.get(ref, "key")
            if key.tenant_id != tenant_id:
                raise InvalidInput("key", "a key of the secret's own tenant")
            return key
        found = self.session.scalar(
            select(KmsKey).where(KmsKey.tenant_id == tenant_id, KmsKey.name == "secrets")
        )
        if found is not None:
            return found
        return self.create(KeySpec("secrets", description="encrypts the tenant's secrets", tenant=tenant_id))

    def delete_secret(self, ref: str) -> None:
        row = self.get_secret(ref)
        events.publish(
            self.session, "secret.deleted", "secret", row.id, tenant_id=row.tenant_id, name=row.name
        )
        self.session.delete(row)


def check_names(session: Session, tenant_id: str, names: Sequence[str]) -> None:
    """Refuse, naming the field, a secret the tenant does not have (before a VM is made)."""
    have = set(session.scalars(select(TenantSecret.name).where(TenantSecret.tenant_id == tenant_id)))
    for n, name in enumerate(names):
        if name not in have:
            raise InvalidInput(f"secrets[{n}]", f"the VM's tenant has no secret '{name}'")


def attach_names(session: Session, vm: VM, names: Sequence[str]) -> None:
    """Give a new VM the secrets of its tenant named in ``names`` (a VM create's ``secrets``)."""
    if not names:
        return
    check_names(session, vm.tenant_id, names)
    rows = session.scalars(
        select(TenantSecret).where(TenantSecret.tenant_id == vm.tenant_id, TenantSecret.name.in_(names))
    )
    session.execute(delete(VmSecret).where(VmSecret.vm_id == vm.id))
    for row in rows:
        session.add(VmSecret(vm_id=vm.id, secret_id=row.id))


def secret_names(session: Session, vm_id: str) -> list[str]:
    return sorted(
        session.scalars(
            select(TenantSecret.name)
            .join(VmSecret, VmSecret.secret_id == TenantSecret.id)
            .where(VmSecret.vm_id == vm_id)
        )
    )


def vendor_data(session: Session, enc: EncryptionService, vm_id: str) -> str | None:
    """The cloud-config that writes the VM's secrets into its guest; None when it has none.
    Raises ``ValueError`` with the reason when one cannot be decrypted (its key disabled, destroyed)."""
    rows = list(
        session.scalars(
            select(TenantSecret)
            .join(VmSecret, VmSecret.secret_id == TenantSecret.id)
            .where(VmSecret.vm_id == vm_id)
            .order_by(TenantSecret.name)
        )
    )
    if not rows:
        return None
    crypto, files = KeyCrypto(session, enc), []
    for row in rows:
        key = session.get(KmsKey, row.key_id)
        if key is None or key.state in ("disabled", "pending-deletion", "destroyed"):
            state = "destroyed" if key is None else key.state
            raise ValueError(f"secret '{row.name}' cannot be given to the VM: its key is {state}")
        value = crypto.decrypt(crypto.settle(key), parse(row.ciphertext), secret_aad(row.id))
        files.append(
            {
                "path": row.path,
                "permissions": "0600",
                "owner": "root:root",
                "encoding": "b64",
                "content": base64.b64encode(value).decode(),
            }
        )
    # JSON is YAML: cloud-init reads this cloud-config as it is
    return "#cloud-config\n" + json.dumps({"write_files": files}, indent=1) + "\n"


def vendor_data_of(db: Database, enc: EncryptionService, vm_id: str) -> str | None:
    with db.read_session() as s:
        return vendor_data(s, enc, vm_id)
