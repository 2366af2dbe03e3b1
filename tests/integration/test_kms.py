"""Issue 18, the tenants' key service, in-process on a real SQLite database and real backup targets:
keys encrypt, decrypt with their associated data, rotate (old versions still decrypt), re-wrap and
make data keys; secrets are write-only and reach a VM's cloud-init vendor-data; deleting a tenant
(or shredding its backup key) makes its backups in every target unreadable, and the targets hold
ciphertext only."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from novacron.backup import vmstore
from novacron.backup.keys import TenantKeyring
from novacron.backup.store import ChunkStore
from novacron.backup.targets import LocalTarget
from novacron.config import Settings
from novacron.db.base import Database, utcnow
from novacron.db.models import AuditRecord, KmsKey, KmsKeyVersion, MfaTotp
from novacron.identity import kms_backup
from novacron.identity.encryption import encryption_for
from novacron.identity.kms_backup import BackupKeyShredded
from novacron.identity.kms_secrets import vendor_data_of
from tests.conftest import in_process_app
from tests.integration.test_api_identity import PW

CHUNK = 64 * 1024


@dataclass
class Env:
    c: TestClient
    admin: dict[str, str]
    db: Database
    settings: Settings
    state: Path

    def login(self, username: str, password: str) -> dict[str, str]:
        r = self.c.post("/v1/tokens", json={"username": username, "password": password})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    state = tmp_path_factory.mktemp("kms")
    with in_process_app(state) as (client, password, db):
        kms_backup.register(db)  # as the server does at start
        settings = Settings(state_dir=state, database_url=db.url, embedded_agent=False)
        e = Env(client, {}, db, settings, state)
        e.admin = e.login("admin", password)
        yield e


def _tenant(env: Env, name: str) -> tuple[str, dict[str, str]]:
    """A tenant and its tenant-admin's headers."""
    r = env.c.post("/v1/tenants", json={"name": name}, headers=env.admin)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    body = {"username": f"{name}-admin", "password": PW, "role": "tenant-admin", "tenant_id": tid}
    assert env.c.post("/v1/users", json=body, headers=env.admin).status_code == 201
    return tid, env.login(f"{name}-admin@{name}", PW)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _ok(r: Any, status: int = 200) -> dict[str, Any]:
    assert r.status_code == status, r.text
    return dict(r.json())


def _field(r: Any, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return str(r.json()["errors"][0]["field"])


def test_keys_encrypt_rotate_rewrap_and_data_keys(env: Env) -> None:
    c = env.c
    _tid, ta = _tenant(env, "kms-a")
    hdr = ta | {"Idempotency-Key": "key-1"}
    key = _ok(
        c.post("/v1/kms/keys", json={"name": "app", "algorithm": "chacha20-poly1305"}, headers=hdr), 201
    )
    again = _ok(
        c.post("/v1/kms/keys", json={"name": "app", "algorithm": "chacha20-poly1305"}, headers=hdr), 201
    )
    assert again["id"] == key["id"] and key["primary_version"] == 1 and key["state"] == "enabled"
    # encrypt, decrypt with the same associated data only
    enc = _ok(
        c.post(
            "/v1/kms/encrypt",
            json={"key": "app", "plaintext": _b64(b"hello"), "aad": _b64(b"ctx")},
            headers=ta,
        )
    )
    assert enc["ciphertext"].startswith(f"kms1:{key['id']}:1:") and enc["version"] == 1
    dec = _ok(
        c.post("/v1/kms/decrypt", json={"ciphertext": enc["ciphertext"], "aad": _b64(b"ctx")}, headers=ta)
    )
    assert base64.b64decode(dec["plaintext"]) == b"hello" and dec["version"] == 1
    wrong = c.post(
        "/v1/kms/decrypt", json={"ciphertext": enc["ciphertext"], "aad": _b64(b"other")}, headers=ta
    )
    assert _field(wrong, 422) == "body.ciphertext"
    # rotate: version 2 encrypts, version 1 still decrypts; re-wrap moves a ciphertext to version 2
    rotated = _ok(c.post("/v1/kms/keys/app/rotate", headers=ta))
    assert rotated["primary_version"] == 2 and rotated["rotated_at"]
    dec = _ok(
        c.post("/v1/kms/decrypt", json={"ciphertext": enc["ciphertext"], "aad": _b64(b"ctx")}, headers=ta)
    )
    assert base64.b64decode(dec["plaintext"]) == b"hello" and dec["version"] == 1
    rew = _ok(
        c.post("/v1/kms/rewrap", json={"ciphertext": enc["ciphertext"], "aad": _b64(b"ctx")}, headers=ta)
    )
    assert (
        rew["version"] == 2
        and rew["ciphertext"].startswith(f"kms1:{key['id']}:2:")
        and "plaintext" not in rew
    )
    dec = _ok(
        c.post("/v1/kms/decrypt", json={"ciphertext": rew["ciphertext"], "aad": _b64(b"ctx")}, headers=ta)
    )
    assert base64.b64decode(dec["plaintext"]) == b"hello" and dec["version"] == 2
    # a data key: its plaintext, and its ciphertext that decrypts to it
    dk = _ok(c.post("/v1/kms/data-keys", json={"key": key["id"], "bytes": 32}, headers=ta))
    assert len(base64.b64decode(dk["plaintext"])) == 32 and dk["version"] == 2
    back = _ok(c.post("/v1/kms/decrypt", json={"ciphertext": dk["ciphertext"]}, headers=ta))
    assert back["plaintext"] == dk["plaintext"]
    # the key material is sealed at rest under the platform KEK, never in clear in a row
    with env.db.read_session() as s:
        materials = list(s.scalars(select(KmsKeyVersion.material).where(KmsKeyVersion.key_id == key["id"])))
    assert len(materials) == 2 and all(m and m.startswith("nce1:") for m in materials)
    # refusals name the field; another tenant neither sees the key nor decrypts with it
    assert (
        _field(c.post("/v1/kms/keys", json={"name": "x", "algorithm": "des"}, headers=ta), 422)
        == "body.algorithm"
    )
    assert _field(c.post("/v1/kms/keys", json={"name": "app"}, headers=ta), 409) == "body.name"
    assert (
        _field(c.post("/v1/kms/encrypt", json={"key": "app", "plaintext": "%%"}, headers=ta), 422)
        == "body.plaintext"
    )
    _, other = _tenant(env, "kms-b")
    r = c.get(f"/v1/kms/keys/{key['id']}", headers=other)
    assert r.status_code == 404, r.text
    stolen = c.post(
        "/v1/kms/decrypt", json={"ciphertext": enc["ciphertext"], "aad": _b64(b"ctx")}, headers=other
    )
    assert _field(stolen, 422) == "body.ciphertext"
    # the audit log has the creation and the rotation
    with env.db.read_session() as s:
        paths = set(s.scalars(select(AuditRecord.path).where(AuditRecord.tenant_id == key["tenant_id"])))
    assert {"/v1/kms/keys", "/v1/kms/keys/app/rotate"} <= paths


def test_disable_schedule_deletion_and_shred(env: Env) -> None:
    c = env.c
    _tid, ta = _tenant(env, "kms-c")
    _ok(c.post("/v1/kms/keys", json={"name": "k"}, headers=ta), 201)
    ct = _ok(c.post("/v1/kms/encrypt", json={"key": "k", "plaintext": _b64(b"v")}, headers=ta))["ciphertext"]
    assert _ok(c.post("/v1/kms/keys/k/disable", headers=ta))["state"] == "disabled"
    assert c.post("/v1/kms/decrypt", json={"ciphertext": ct}, headers=ta).status_code == 409
    assert _ok(c.post("/v1/kms/keys/k/enable", headers=ta))["state"] == "enabled"
    pending = _ok(c.post("/v1/kms/keys/k/schedule-deletion", json={"days": 7}, headers=ta))
    assert pending["state"] == "pending-deletion" and pending["deletion_at"]
    assert (
        _field(c.post("/v1/kms/keys/k/schedule-deletion", json={"days": 99}, headers=ta), 422) == "body.days"
    )
    assert _ok(c.post("/v1/kms/keys/k/cancel-deletion", headers=ta))["state"] == "disabled"
    _ok(c.post("/v1/kms/keys/k/enable", headers=ta))
    shredded = _ok(c.post("/v1/kms/keys/k/shred", headers=ta))
    assert shredded["state"] == "destroyed" and shredded["destroyed_at"]
    r = c.post("/v1/kms/decrypt", json={"ciphertext": ct}, headers=ta)
    assert r.status_code == 409 and "destroyed" in r.json()["detail"], r.text
    with env.db.read_session() as s:
        assert set(
            s.scalars(select(KmsKeyVersion.material).where(KmsKeyVersion.key_id == shredded["id"]))
        ) == {None}
    # a member may use keys and write secrets but not manage keys
    body = {"username": "dev", "password": PW, "role": "member"}
    assert c.post("/v1/users", json=body, headers=ta).status_code == 201
    dev = env.login("dev@kms-c", PW)
    assert c.post("/v1/kms/keys", json={"name": "mine"}, headers=dev).status_code == 403


def test_secrets_are_write_only_and_become_the_vms_vendor_data(env: Env) -> None:
    c = env.c
    tid, ta = _tenant(env, "kms-d")
    value = "db-password-" + uuid.uuid4().hex
    body = {"name": "db-password", "secret_value": value, "path": "/etc/app/db.pw"}
    sec = _ok(c.post("/v1/kms/secrets", json=body, headers=ta | {"Idempotency-Key": "s1"}), 201)
    assert value not in json.dumps(sec) and sec["path"] == "/etc/app/db.pw"
    assert (
        _ok(c.post("/v1/kms/secrets", json=body, headers=ta | {"Idempotency-Key": "s1"}), 201)["id"]
        == sec["id"]
    )
    listed = _ok(c.get("/v1/kms/secrets", headers=ta))
    assert [s["name"] for s in listed["items"]] == ["db-password"] and value not in json.dumps(listed)
    assert value not in c.get("/v1/kms/secrets/db-password", headers=ta).text
    # the tenant's "secrets" key was made to encrypt it
    assert _ok(c.get(f"/v1/kms/keys/{sec['key_id']}", headers=ta))["name"] == "secrets"
    bad = {"name": "x", "secret_value": "v", "path": "/etc/../shadow"}
    assert _field(c.post("/v1/kms/secrets", json=bad, headers=ta), 422) == "body.path"
    assert _field(c.post("/v1/kms/secrets", json={"name": "y"}, headers=ta), 422) == "body.secret_value"
    # a VM of the tenant created with the secret: its prepare step's vendor-data writes the file
    from novacron.db.base import new_id
    from novacron.db.models import VM, VmSecret

    project = _ok(c.post("/v1/projects", json={"name": "apps"}, headers=ta), 201)["id"]
    with env.db.session() as s:  # the row as VMService.create leaves it (no host in-process)
        vm = VM(id=new_id("vm"), project_id=project, tenant_id=tid, name="with-secret", vcpus=1, ram_mb=64,
                disk_gb=1, state="building", desired_state="running")  # fmt: skip
        s.add(vm)
        s.flush()
        s.add(VmSecret(vm_id=vm.id, secret_id=sec["id"]))
    vendor = vendor_data_of(env.db, encryption_for(env.settings), vm.id)
    assert vendor is not None and vendor.startswith("#cloud-config\n")
    (entry,) = json.loads(vendor.split("\n", 1)[1])["write_files"]
    assert entry["path"] == "/etc/app/db.pw" and entry["permissions"] == "0600"
    assert base64.b64decode(entry["content"]).decode() == value
    # the key disabled: the VM's start fails with the reason rather than boot without it
    _ok(c.post(f"/v1/kms/keys/{sec['key_id']}/disable", headers=ta))
    with pytest.raises(ValueError, match="its key is disabled"):
        vendor_data_of(env.db, encryption_for(env.settings), vm.id)


def _backup(env: Env, targets: list[Path], tenant_id: str, marker: bytes) -> bytes:
    """A snapshot of a disk holding ``marker`` in every target, through the control plane's keys."""
    disk = bytearray(4 * CHUNK)
    for i in range(4):
        disk[i * CHUNK + 100 : i * CHUNK + 100 + len(marker)] = marker
    for root in targets:
        store = ChunkStore(LocalTarget(root), vmstore.key_service(env.settings), chunk_size=CHUNK)
        store.write_snapshot(tenant_id, "snap-1", "vda", lambda off, n: bytes(disk[off : off + n]), len(disk))
    return bytes(disk)


def _restore(env: Env, root: Path, tenant_id: str, dest: Path) -> bytes:
    store = ChunkStore(LocalTarget(root), vmstore.key_service(env.settings), chunk_size=CHUNK)
    store.restore_to(tenant_id, "snap-1", "vda", dest)
    return dest.read_bytes()


def test_deleting_a_tenant_or_shredding_its_backup_key_makes_its_backups_unreadable(
    env: Env, tmp_path: Path
) -> None:
    targets = [tmp_path / "target-a", tmp_path / "replica-b"]
    doomed, _ = _tenant(env, "shred-me")
    marker = b"PLAINTEXT-MARKER-" + uuid.uuid4().hex.encode()
    disk = _backup(env, targets, doomed, marker)
    for root in targets:  # readable while the tenant's key exists; its key file names the KMS key
        assert _restore(env, root, doomed, tmp_path / "before.raw") == disk
        wrapped = json.loads((root / TenantKeyring.object_key(doomed)).read_bytes())["wrapped"]
        assert wrapped["kms"].startswith("kmk-")
    with env.db.read_session() as s:
        names = list(
            s.scalars(select(KmsKey.name).where(KmsKey.tenant_id == doomed, KmsKey.purpose == "backup"))
        )
    assert names == ["backup"]
    # the tenant is deleted: its keys with it; every target's copy of its backups is unreadable
    assert env.c.delete(f"/v1/tenants/{doomed}", headers=env.admin).status_code == 204
    with env.db.read_session() as s:
        assert s.scalar(select(KmsKey.id).where(KmsKey.tenant_id == doomed)) is None
    for root in targets:
        with pytest.raises(BackupKeyShredded, match="destroyed with the tenant"):
            _restore(env, root, doomed, tmp_path / "after.raw")
        files = [p for p in root.rglob("*") if p.is_file()]
        assert any("chunks" in p.parts for p in files)
        assert not [p for p in files if marker in p.read_bytes()], "a target holds the plaintext"
    # another tenant shreds its backup key explicitly: the same, the tenant itself stays
    kept, ta = _tenant(env, "shred-key")
    disk = _backup(env, targets[:1], kept, marker)
    # a KEK rotation re-wraps the outer layer of its key file and keeps the KMS layer (what
    # sealing.rotate does for every registered target)
    from novacron.identity.kek import key_service

    before = json.loads((targets[0] / TenantKeyring.object_key(kept)).read_bytes())["wrapped"]
    platform = key_service(env.settings)
    platform.rotate()
    assert TenantKeyring(platform, LocalTarget(targets[0])).rewrap() >= 1
    after = json.loads((targets[0] / TenantKeyring.object_key(kept)).read_bytes())["wrapped"]
    assert after["kek"] != before["kek"] and after["kms"] == before["kms"]
    assert _restore(env, targets[0], kept, tmp_path / "kept.raw") == disk
    keys = _ok(env.c.get("/v1/kms/keys", headers=ta))["items"]
    (bkey,) = [k for k in keys if k["purpose"] == "backup"]
    assert _ok(env.c.post(f"/v1/kms/keys/{bkey['id']}/shred", headers=ta))["state"] == "destroyed"
    with pytest.raises(BackupKeyShredded, match="crypto-shredded"):
        _restore(env, targets[0], kept, tmp_path / "gone.raw")


def test_rotating_a_key_needs_a_step_up_once_the_user_has_a_second_factor(env: Env) -> None:
    from tests.integration.test_mfa import Authenticator

    c = env.c
    _tid, ta = _tenant(env, "kms-mfa")
    _ok(c.post("/v1/kms/keys", json={"name": "k"}, headers=ta), 201)
    r = c.post("/v1/mfa/totp", headers=ta)
    assert r.status_code == 201, r.text
    app = Authenticator(r.json()["secret"])
    assert c.post("/v1/mfa/totp/confirm", json={"code": app.code()}, headers=ta).status_code == 200
    with env.db.session() as s:  # six minutes later: the confirmation's code no longer counts
        s.execute(update(MfaTotp).values(stepup_at=utcnow() - timedelta(minutes=6)))
    refused = c.post("/v1/kms/keys/k/rotate", headers=ta)
    assert refused.status_code == 403 and refused.json()["title"] == "Step-up required", refused.text
    assert _ok(c.get("/v1/kms/keys/k", headers=ta))["primary_version"] == 1
    assert c.post("/v1/mfa/verify", json={"code": app.code()}, headers=ta).status_code == 200
    assert _ok(c.post("/v1/kms/keys/k/rotate", headers=ta))["primary_version"] == 2


def test_the_cli_encrypts_decrypts_rotates_and_stores_a_secret(
    env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from novacron.cli import kms as kms_cli
    from novacron.cli.client import Client

    _tid, ta = _tenant(env, "kms-cli")
    token = ta["Authorization"].removeprefix("Bearer ")
    client = Client(
        "http://testserver", token=token, credentials_path=tmp_path / "c.json", transport=env.c._transport
    )
    monkeypatch.setattr(kms_cli, "client_of", lambda _ctx: client)
    run = CliRunner()
    made = run.invoke(kms_cli.app, ["create", "cli-key", "--algorithm", "chacha20-poly1305"])
    assert made.exit_code == 0 and "version 1" in made.output, made.output
    enc = run.invoke(kms_cli.app, ["encrypt", "cli-key", "--aad", "a"], input="top secret")
    assert enc.exit_code == 0 and enc.output.startswith("kms1:"), enc.output
    ct = enc.output.strip()
    assert run.invoke(kms_cli.app, ["rotate", "cli-key"]).exit_code == 0
    dec = run.invoke(kms_cli.app, ["decrypt", ct, "--aad", "a"])
    assert dec.exit_code == 0 and dec.output == "top secret", dec.output
    rew = run.invoke(kms_cli.app, ["rewrap", ct, "--aad", "a"])
    assert rew.exit_code == 0 and ":2:" in rew.output, rew.output
    listed = run.invoke(kms_cli.app, ["list"])
    assert "cli-key" in listed.output and "chacha20-poly1305" in listed.output, listed.output
    stored = run.invoke(kms_cli.app, ["secret", "set", "api-token"], input="s3cr3t-value")
    assert stored.exit_code == 0 and "/run/novacron/secrets/api-token" in stored.output, stored.output
    shown = run.invoke(kms_cli.app, ["secret", "list"])
    assert "api-token" in shown.output and "s3cr3t-value" not in shown.output
