"""Every secret the database holds, sealed; and KEK rotation, which re-wraps them all.

The sealed places (:data:`PLACES`): JWT signing private keys, the platform CA key, backup-target
credentials, the keys handed to an agent with a pending host operation, alert webhooks', scaling
groups' lifecycle hooks' and webhook subscriptions' signing secrets and URLs, load balancers'
certificate keys and ACME account keys, users' TOTP secrets, identity providers' client secrets
and the provider tokens of users signed on with one (and of sign-ins under way), tenants' KMS key
material.
``seal_clear_rows`` seals whatever an older version stored in clear (start-up and migration 0014
run it), then scrubs SQLite's free pages and WAL so the clear copies do not linger in the file.

``rotate`` (``POST /v1/admin/kek/rotate``, ``novacron admin rotate-kek``): a new current KEK,
every sealed value's data key re-wrapped under it, every backup target's tenant keys re-wrapped
(``TenantKeyring.rewrap``), then the old KEKs retired — only when nothing still needs them.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.db.migrate import scrub_free_pages
from novacron.db.models import (
    AcmeAccount,
    AlertReceiver,
    BackupTarget,
    CertificateAuthority,
    DRRunbook,
    HostOperation,
    IdentityProvider,
    LbCertificate,
    MfaTotp,
    ScalingLifecycleHook,
    SigningKey,
    SsoLink,
    SsoLogin,
    Task,
    WebhookSubscription,
)
from novacron.identity.encryption import EncryptionService, is_sealed, scrub
from novacron.identity.keys import private_pem_aad
from novacron.identity.pki import key_pem_aad

if TYPE_CHECKING:
    from novacron.config import Settings
    from novacron.db.base import Database

log = logging.getLogger(__name__)
_rotation = threading.Lock()


def secrets_aad(op_id: str) -> str:
    """What the keys handed to an agent with a host operation are bound to."""
    return f"host_operations.payload.secrets:{op_id}"


def _target_aad(target_id: str) -> str:
    from novacron.backup.vmstore import config_aad

    return config_aad(target_id)


def _text_rows(session: Session) -> Iterator[tuple[Any, str, str]]:
    """(row, attribute, associated data) of every sealed text column."""
    for key in session.scalars(select(SigningKey)):
        yield key, "private_pem", private_pem_aad(key.kid)
    for ca in session.scalars(select(CertificateAuthority)):
        yield ca, "key_pem", key_pem_aad(ca.name)
    yield from _lb_key_rows(session)
    yield from _lifecycle_hook_rows(session)
    yield from _mfa_rows(session)
    yield from _sso_rows(session)
    yield from _kms_rows(session)


def _sso_rows(session: Session) -> Iterator[tuple[Any, str, str]]:
    """Identity providers' client secrets, users' provider tokens, sign-ins under way."""
    from novacron.identity.sso import link_aad, login_aad
    from novacron.identity.sso_providers import secret_aad

    for provider in session.scalars(select(IdentityProvider)):
        yield provider, "client_secret", secret_aad(provider.id)
    for link in session.scalars(select(SsoLink).where(SsoLink.tokens != "")):
        yield link, "tokens", link_aad(link.user_id)
    for login in session.scalars(select(SsoLogin)):
        yield login, "secret", login_aad(login.id)


def _kms_rows(session: Session) -> Iterator[tuple[Any, str, str]]:
    """Tenants' KMS key versions' material (none once a key is destroyed)."""
    from novacron.db.models import KmsKeyVersion
    from novacron.identity.kms import material_aad

    for row in session.scalars(select(KmsKeyVersion).where(KmsKeyVersion.material.is_not(None))):
        yield row, "material", material_aad(row.key_id, row.version)


def _mfa_rows(session: Session) -> Iterator[tuple[Any, str, str]]:
    """Users' TOTP secrets."""
    from novacron.identity.mfa_codes import secret_aad

    for factor in session.scalars(select(MfaTotp)):
        yield factor, "secret", secret_aad(factor.user_id)


def _lifecycle_hook_rows(session: Session) -> Iterator[tuple[Any, str, str]]:
    """Scaling groups' lifecycle hooks' signing secrets and URLs."""
    from novacron.autoscaling.lifecycle import signing_secret_aad, url_aad

    for hook in session.scalars(select(ScalingLifecycleHook)):
        yield hook, "signing_secret", signing_secret_aad(hook.id)
        yield hook, "url", url_aad(hook.id)


def _lb_key_rows(session: Session) -> Iterator[tuple[Any, str, str]]:
    """Load balancers' certificate keys and ACME account keys."""
    from novacron.lbaas.acme_service import account_key_aad
    from novacron.lbaas.certstore import private_key_aad

    for cert in session.scalars(select(LbCertificate).where(LbCertificate.private_key.is_not(None))):
        yield cert, "private_key", private_key_aad(cert.id)
    for account in session.scalars(select(AcmeAccount)):
        yield account, "key_pem", account_key_aad(account.id)


def seal_clear_rows(db: Database, enc: EncryptionService) -> int:
    """Seal the secrets stored in clear by an older version; returns how many were sealed."""
    sealed = 0
    with db.session() as s:
        for row, attr, aad in _text_rows(s):
            if not is_sealed(getattr(row, attr)):
                setattr(row, attr, enc.seal_text(getattr(row, attr), aad))
                sealed += 1
        for target in s.scalars(select(BackupTarget)):
            config = enc.seal_fields(dict(target.config), _target_aad(target.id))
            if config != target.config:
                target.config, sealed = config, sealed + 1
        for op in s.scalars(select(HostOperation)):
            secrets = (op.payload or {}).get("secrets")
            if isinstance(secrets, dict) and "sealed" not in secrets:
                clear = json.dumps(secrets).encode()
                op.payload = {**op.payload, "secrets": {"sealed": enc.seal(clear, secrets_aad(op.id))}}
                sealed += 1
        sealed += _seal_clear_hook_urls(s, enc)
    if sealed:
        scrub_free_pages(db)
        log.warning("sealed %d secrets that were stored in clear by an older version", sealed)
    return sealed


def _seal_clear_hook_urls(s: Session, enc: EncryptionService) -> int:
    """Webhook URLs of runbooks (and of their runs' plans) written in clear by an older version."""
    sealed = 0
    for row, column, aad, path in list(_dr_rows(s)):
        for n, m, url in list(_hook_urls(_steps_of(row, column, path))):
            if not is_sealed(url):
                _set_field(row, column, (*path, n, "hooks", m, "url"))(enc.seal_text(str(url), aad))
                sealed += 1
    return sealed


class KEKMismatch(RuntimeError):
    """This process's KEKs cannot open the database's secrets (another replica's KEKs?)."""


def check_openable(db: Database, enc: EncryptionService) -> None:
    """Fail at start, with the fix, when the stored secrets were sealed under KEKs this process lacks."""
    with db.read_session() as s:
        for row, attr, aad in _text_rows(s):
            value = getattr(row, attr)
            if not is_sealed(value):
                continue
            try:
                enc.open(value, aad)
            except Exception as exc:
                raise KEKMismatch(
                    f"the database's secrets are sealed under KEK {enc.kek_of(value)}, which this process "
                    f"cannot use ({type(exc).__name__}): give every replica the same KEKs "
                    "(NOVACRON_KEK_DIR on shared storage, or the same NOVACRON_KEK_PROVIDER settings)"
                ) from exc


@dataclass
class RotationReport:
    new_kek: str
    rewrapped: int = 0
    targets: dict[str, Any] = field(default_factory=dict)
    retired: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


#: where a sealed value goes back once re-wrapped
Put = Callable[[str], None]


def _set_attr(row: Any, attr: str) -> Put:
    return lambda new: setattr(row, attr, new)


def _set_field(row: Any, column: str, path: tuple[str | int, ...]) -> Put:
    """A setter of ``row.<column>[path...]`` that reassigns the JSON column (so it is saved)."""

    def put(new: str) -> None:
        value = copy.deepcopy(getattr(row, column))
        inner = value
        for key in path[:-1]:
            inner = inner[key]
        inner[path[-1]] = new
        setattr(row, column, value)

    return put


def _hook_urls(steps: Any) -> Iterator[tuple[int, int, Any]]:
    """(step, hook, url) of every webhook of a runbook's steps or a DR task's plan."""
    for n, step in enumerate(steps if isinstance(steps, list) else []):
        for m, hook in enumerate((step.get("hooks") or []) if isinstance(step, dict) else []):
            if isinstance(hook, dict) and hook.get("url"):
                yield n, m, hook["url"]


def _dr_rows(s: Session) -> Iterator[tuple[Any, str, str, tuple[str | int, ...]]]:
    """(row, column, associated data, path to the steps) of every runbook and DR task plan."""
    from novacron.backup.drsteps import hook_url_aad

    for runbook in s.scalars(select(DRRunbook)):
        yield runbook, "steps", hook_url_aad(runbook.id), ()
    for task in s.scalars(select(Task).where(Task.resource_type == "dr-runbook")):
        if isinstance((task.params or {}).get("plan"), list):
            yield task, "params", hook_url_aad(task.resource_id), ("plan",)


def _steps_of(row: Any, column: str, path: tuple[str | int, ...]) -> Any:
    value = getattr(row, column)
    for key in path:
        value = value[key]
    return value


def _sealed_values(s: Session) -> Iterator[tuple[str, str, Put]]:
    """(sealed value, associated data, setter) of every sealed value the database holds: what
    rotation re-wraps and what decides which KEKs may be retired (one list, so they agree)."""
    for row, attr, aad in _text_rows(s):
        if is_sealed(value := getattr(row, attr)):
            yield value, aad, _set_attr(row, attr)
    yield from _sealed_settings(s)
    yield from _sealed_urls(s)
    yield from _sealed_alert_secrets(s)
    yield from _sealed_webhooks(s)


def _sealed_webhooks(s: Session) -> Iterator[tuple[str, str, Put]]:
    """Webhook subscriptions' URLs and signing secrets (a list: several during a rotation)."""
    from novacron.webhooks.service import secret_aad, url_aad

    for sub in s.scalars(select(WebhookSubscription)):
        if is_sealed(value := sub.url):
            yield value, url_aad(sub.id), _set_attr(sub, "url")
        for n, entry in enumerate(sub.secrets or []):
            secret = entry.get("secret")
            if isinstance(secret, str) and is_sealed(secret):
                yield secret, secret_aad(sub.id), _set_field(sub, "secrets", (n, "secret"))


def _sealed_alert_secrets(s: Session) -> Iterator[tuple[str, str, Put]]:
    """The signing secrets and URLs of alert webhook receivers."""
    from novacron.monitoring.alerting.notify import signing_secret_aad, webhook_url_aad

    for receiver in s.scalars(select(AlertReceiver)):
        if is_sealed(value := receiver.signing_secret):
            yield value, signing_secret_aad(receiver.id), _set_attr(receiver, "signing_secret")
        if is_sealed(value := receiver.url):
            yield value, webhook_url_aad(receiver.id), _set_attr(receiver, "url")


def _sealed_settings(s: Session) -> Iterator[tuple[str, str, Put]]:
    """The sealed values in JSON settings: backup target configs and host operations' secrets."""
    for target in s.scalars(select(BackupTarget)):
        for name, value in (target.config or {}).items():
            if is_sealed(value):
                yield value, f"{_target_aad(target.id)}:{name}", _set_field(target, "config", (name,))
    for op in s.scalars(select(HostOperation)):
        secrets = (op.payload or {}).get("secrets")
        if isinstance(secrets, dict) and is_sealed(value := secrets.get("sealed")):
            yield value, secrets_aad(op.id), _set_field(op, "payload", ("secrets", "sealed"))


def _sealed_urls(s: Session) -> Iterator[tuple[str, str, Put]]:
    """The sealed URLs: DR webhook hooks, and the sources of image imports not finished yet."""
    from novacron.compute.images import ImportImage, source_url_aad

    for row, column, aad, path in _dr_rows(s):
        for n, m, url in _hook_urls(_steps_of(row, column, path)):
            if is_sealed(url):
                yield url, aad, _set_field(row, column, (*path, n, "hooks", m, "url"))
    # image imports not finished yet keep their source URL sealed in the task's parameters
    for task in s.scalars(select(Task).where(Task.kind == ImportImage.kind)):
        if is_sealed(value := (task.params or {}).get("source_url")):
            yield value, source_url_aad(task.resource_id), _set_field(task, "params", ("source_url",))


def rewrap_rows(db: Database, enc: EncryptionService) -> int:
    """Re-wrap every sealed value of the database under the current KEK."""
    changed = 0
    with db.session() as s:
        for value, aad, put in list(_sealed_values(s)):
            if (new := enc.rewrap(value, aad)) is not None:
                put(new)
                changed += 1
    return changed


def keks_in_use(db: Database, enc: EncryptionService) -> set[str]:
    """The KEKs some sealed value of the database is wrapped under now."""
    with db.read_session() as s:
        return {enc.kek_of(value) for value, _aad, _put in _sealed_values(s)}


def rotate(settings: Settings, db: Database, retire: bool = True) -> RotationReport:
    """A new KEK; everything re-wrapped under it; the old KEKs retired if nothing needs them."""
    from novacron.backup import vmstore
    from novacron.backup.keys import TenantKeyring
    from novacron.identity.encryption import encryption_for

    enc = encryption_for(settings)
    keys = enc.keys
    with _rotation:  # two rotations at once would each retire the other's new KEK
        old = keys.kek_ids()
        report = RotationReport(new_kek=keys.rotate())
        report.rewrapped = rewrap_rows(db, enc)
        with db.read_session() as s:
            rows = s.scalars(select(BackupTarget))
            targets = [(t.name, t.type, vmstore.target_config(settings, t)) for t in rows]
        in_use: set[str] = set()
        for name, kind, config in targets:
            try:
                ring = TenantKeyring(keys, vmstore.target_from_config(kind, config))
                report.targets[name] = ring.rewrap()
                in_use |= ring.keks()
            except Exception as exc:  # an unreachable target keeps its keys under the old KEK
                report.targets[name] = None
                report.errors.append(f"backup target {name}: {type(exc).__name__}: {scrub(str(exc), config)}")
        old = [k for k in old if k != report.new_kek]
        if retire and not report.errors:
            # what is retired is decided by what the stored values name now, not by what the
            # re-wrap believes it did: a value sealed meanwhile (a request that wrapped its key
            # before the new KEK existed, another replica) keeps its KEK until the next rotation
            in_use |= keks_in_use(db, enc)
            report.retired, report.kept = keys.retire_unused(old, in_use)
        else:
            report.kept = old
    scrub_free_pages(db)
    return report
