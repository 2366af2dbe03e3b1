"""Issue 11, findings 2-4: what a local user, a stolen database copy and an API reader can get.

One real server (QEMU driver), one real VM and one S3 backup target on the moto emulator serve
the module. The state directory is made world-readable before the first start, as an install by
an older version (or a plain ``mkdir -p``) left it; the server must tighten it. Attacks:

- a local unprivileged user (``nobody``) copies the database, its WAL, the KEK files, a VM's disk
  or seed ISO: permission denied, even when the directories above are made traversable;
- with a copy of the database and WAL (taken as root), no private key, CA key or credential is
  in clear, and no key can be loaded to mint a token;
- an API reader (and the audit log, the events, the idempotency store, the server's log) never
  sees a backup target's secret, while the target still works for a real backup.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import (
    Guest,
    Server,
    default_project,
    destroy_server,
    import_guest_image,
    make_server,
    require,
    wait_task,
)

SECRET = "wJalrXUtnFEMI-K7MDENG-" + uuid.uuid4().hex
SECRET2 = "rotated-" + uuid.uuid4().hex
SEED_SECRET = "seed-password-" + uuid.uuid4().hex
#: a tenant secret (issue 18) the VM is created with: cloud-init vendor-data in its seed only
VM_SECRET = "vm-secret-" + uuid.uuid4().hex
USER_DATA = f"#!/bin/sh\necho 'root:{SEED_SECRET}' > /dev/null\necho READY-SEED\n"


@dataclass
class Env:
    server: Server
    c: httpx.Client
    vm_id: str
    s3: object


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "nobody", "--", *argv], capture_output=True, text=True)


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


@pytest.fixture(scope="module")
def env(guest: Guest, s3_emulator: object) -> Iterator[Env]:
    require(os.geteuid() == 0, "the local-user attacks run as root (runuser to nobody)")
    server = make_server()
    os.chmod(server.state_dir, 0o755)  # as an older install (or mkdir -p with umask 022) left it
    (server.state_dir / "leftover.txt").write_text("from an older version")
    os.chmod(server.state_dir / "leftover.txt", 0o644)
    server.start(timeout_s=180)
    try:
        with server.client() as c:
            c.timeout = httpx.Timeout(60)
            import_guest_image(c, guest)
            project = default_project(c)
            tenant = c.get(f"/v1/projects/{project}").json()["tenant_id"]
            body = {
                "name": "db-password",
                "secret_value": VM_SECRET,
                "path": "/etc/app/db.pw",
                "tenant": tenant,
            }
            assert c.post("/v1/kms/secrets", json=body).status_code == 201
            r = c.post(
                "/v1/vms",
                json={
                    "name": "private",
                    "image": "test-guest",
                    "flavor": "tiny",
                    "user_data": USER_DATA,
                    "project_id": project,
                    "secrets": ["db-password"],
                },
            )
            assert r.status_code == 202, r.text
            done = wait_task(c, r.json()["task_id"], timeout_s=300)
            assert done["state"] == "succeeded", done["error"]
            yield Env(server, c, r.json()["vm"]["id"], s3_emulator)
    finally:
        destroy_server(server)


def _db_bytes(server: Server) -> bytes:
    """What a thief copying the database gets: the file and its WAL (and shared memory)."""
    base = server.state_dir / "novacron.db"
    return b"".join(p.read_bytes() for p in (base, Path(f"{base}-wal"), Path(f"{base}-shm")) if p.exists())


def test_state_dir_is_private_and_nobody_cannot_copy_the_database(env: Env) -> None:
    state = env.server.state_dir
    assert _mode(state) == 0o700
    assert _mode(state / "leftover.txt") == 0o600  # tightened at start, and logged
    assert "leftover.txt: 0644 -> 0600" in env.server.log_path.read_text()
    db = state / "novacron.db"
    secrets = [db, Path(f"{db}-wal"), *sorted((state / "kek").iterdir())]
    assert _as_nobody("cat", str(db)).returncode != 0
    # even with every directory traversable, the files themselves refuse
    os.chmod(state, 0o711)
    os.chmod(state / "kek", 0o711)
    try:
        for path in secrets:
            if path.exists():
                assert _mode(path) == 0o600, path
                r = _as_nobody("cat", str(path))
                assert r.returncode != 0 and "Permission denied" in r.stderr, path
    finally:
        os.chmod(state, 0o700)
        os.chmod(state / "kek", 0o700)
    for path in state.rglob("*"):
        if path.is_symlink() or path.name == "server.log":
            continue  # server.log is the test harness's own capture of stdout
        want = 0o700 if path.is_dir() else 0o600
        assert _mode(path) & 0o077 == 0, f"{path} is {_mode(path):04o}, wanted {want:04o}"


def test_a_copied_database_holds_no_private_key_or_credential_in_clear(env: Env) -> None:
    raw = _db_bytes(env.server)
    assert b"PRIVATE KEY" not in raw
    copy = env.server.state_dir.parent / f"stolen-{uuid.uuid4().hex}.db"
    base = env.server.state_dir / "novacron.db"
    copy.write_bytes(base.read_bytes())
    Path(f"{copy}-wal").write_bytes(Path(f"{base}-wal").read_bytes())  # the thief takes the WAL too
    try:
        with sqlite3.connect(copy) as stolen:
            rows = stolen.execute("select private_pem from signing_keys").fetchall()
            rows += stolen.execute("select key_pem from certificate_authorities").fetchall()
    finally:
        for p in (copy, Path(f"{copy}-wal"), Path(f"{copy}-shm")):
            p.unlink(missing_ok=True)
    assert rows, "the server made a signing key and a CA"
    for (value,) in rows:
        assert value.startswith("nce1:")
        with pytest.raises(ValueError):  # nothing to mint a token with
            serialization.load_pem_private_key(value.encode(), password=None)
    # a token signed with any other key is refused
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    forged = jwt.encode(
        {"sub": "admin", "role": "admin", "exp": 4102444800},
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": "key-forged"},
    )
    assert (
        httpx.get(f"{env.server.url}/v1/users", headers={"Authorization": f"Bearer {forged}"}).status_code
        == 401
    )
    assert not (env.server.state_dir / "pki" / "ca.key").exists()  # the CA key is never on disk


def _qemu_uid(instance_dir: Path) -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if str(instance_dir).encode() in cmdline and b"qemu-system" in cmdline:
                return proc.stat().st_uid
    raise AssertionError(f"no QEMU runs the instance of {instance_dir}")


def test_vm_disk_seed_and_console_log_are_private_to_the_qemu_account(env: Env) -> None:
    idir = env.server.state_dir / "instances" / env.vm_id
    files = [p for p in idir.rglob("*") if not p.is_symlink()]
    assert {"disk.qcow2", "seed.iso", "console.log"} <= {p.name for p in files}
    owner = _qemu_uid(idir)  # QEMU runs as the agent's account: root on this node
    assert _mode(idir) == 0o700 and idir.stat().st_uid == owner
    for p in files:
        assert _mode(p) == (0o700 if p.is_dir() else 0o600), f"{p}: {_mode(p):04o}"
        assert p.stat().st_uid == owner
    assert SEED_SECRET.encode() in (idir / "seed.iso").read_bytes()  # the guest's user-data is in it...
    os.chmod(env.server.state_dir, 0o711)
    os.chmod(env.server.state_dir / "instances", 0o711)
    os.chmod(idir, 0o711)
    try:
        for name in ("seed.iso", "disk.qcow2", "console.log"):
            r = _as_nobody("cat", str(idir / name))  # ...and no other account reads it
            assert r.returncode != 0 and "Permission denied" in r.stderr, name
    finally:
        for d in (idir, env.server.state_dir / "instances", env.server.state_dir):
            os.chmod(d, 0o700)


def test_a_tenant_secret_reaches_the_seed_as_vendor_data_and_is_in_clear_nowhere_else(env: Env) -> None:
    from novacron.virt.cidata import read_cidata_iso

    seed = read_cidata_iso(env.server.state_dir / "instances" / env.vm_id / "seed.iso")
    assert seed["vendor-data"].startswith("#cloud-config\n") and VM_SECRET not in seed["user-data"]
    (entry,) = json.loads(seed["vendor-data"].split("\n", 1)[1])["write_files"]
    assert entry["path"] == "/etc/app/db.pw" and entry["permissions"] == "0600"
    assert base64.b64decode(entry["content"]).decode() == VM_SECRET
    # write-only in the API; in the database, the log and the host operations only as ciphertext
    assert VM_SECRET not in env.c.get("/v1/kms/secrets").text
    encoded = base64.b64encode(VM_SECRET.encode())
    for blob in (_db_bytes(env.server), env.server.log_path.read_bytes()):
        assert VM_SECRET.encode() not in blob and encoded not in blob


def _s3_config(env: Env, bucket: str) -> dict[str, object]:
    import boto3

    endpoint = env.s3.endpoint  # type: ignore[attr-defined]
    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    ).create_bucket(Bucket=bucket)
    return {
        "bucket": bucket,
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "AKIATEST",
        "aws_secret_access_key": SECRET,
    }


def test_backup_target_secret_is_write_only_sealed_and_the_target_still_backs_up(env: Env) -> None:
    c = env.c
    bucket = "nc-" + uuid.uuid4().hex[:12]
    body = {"name": "s3-private", "type": "s3", "config": _s3_config(env, bucket), "chunk_size": 1 << 20}
    headers = {"Idempotency-Key": "target-" + uuid.uuid4().hex}
    r = c.post("/v1/backup-targets", json=body, headers=headers)
    assert r.status_code == 201, r.text
    target = r.json()
    assert target["config"]["aws_secret_access_key"] == "***"
    assert target["config"]["aws_access_key_id"] == "AKIATEST"
    assert target["secrets_set"] == ["aws_secret_access_key"]
    replay = c.post("/v1/backup-targets", json=body, headers=headers)
    assert replay.headers.get("Idempotent-Replayed") == "true" and SECRET not in replay.text
    seen = [
        r.text,
        replay.text,
        c.get("/v1/backup-targets").text,
        c.get(f"/v1/backup-targets/{target['id']}").text,
    ]

    # PATCH: "***" and a left-out secret keep the stored one; a new one replaces it
    r = c.patch(f"/v1/backup-targets/{target['id']}", json={"config": {"aws_secret_access_key": "***"}})
    assert r.status_code == 200, r.text
    assert r.json()["secrets_set"] == ["aws_secret_access_key"]
    r = c.post("/v1/backups", json={"vm": env.vm_id, "target": "s3-private", "full": True})
    assert r.status_code == 202, r.text
    done = wait_task(c, r.json()["task_id"], timeout_s=600)
    assert done["state"] == "succeeded", done["error"]
    assert c.get(f"/v1/backups/{r.json()['backup']['id']}").json()["state"] == "available"
    r = c.patch(f"/v1/backup-targets/{target['id']}", json={"config": {"aws_secret_access_key": SECRET2}})
    assert r.status_code == 200 and SECRET2 not in r.text
    seen.append(r.text)

    seen.append(c.get("/v1/events", params={"limit": 500}).text)
    seen.append(c.get("/v1/audit", params={"limit": 500}).text)
    seen.append(env.server.log_path.read_text())
    for text in seen:
        assert SECRET not in text and SECRET2 not in text
    raw = _db_bytes(env.server)
    assert SECRET.encode() not in raw and SECRET2.encode() not in raw
    with sqlite3.connect(env.server.state_dir / "novacron.db") as db:
        (config,) = db.execute("select config from backup_targets where id=?", (target["id"],)).fetchone()
        stored = json.loads(config)
        idem = [row[0] for row in db.execute("select response_body from idempotency_keys")]
        hashes = {row[0] for row in db.execute("select request_hash from idempotency_keys")}
        ops = [row[0] for row in db.execute("select payload from host_operations")]
    assert stored["aws_secret_access_key"].startswith("nce1:") and stored["bucket"] == bucket
    assert idem and all(SECRET not in body for body in idem)
    # nor as an unsalted hash of the request a guess could be checked against
    from novacron.api.routers.backups import TargetCreate

    payload = TargetCreate(**body).model_dump(mode="json")  # type: ignore[arg-type]
    clear = json.dumps(["POST", "/v1/backup-targets", payload], sort_keys=True).encode()
    assert hashlib.sha256(clear).hexdigest() not in hashes
    payload["config"]["aws_secret_access_key"] = "***"
    masked = json.dumps(["POST", "/v1/backup-targets", payload], sort_keys=True).encode()
    assert hashlib.sha256(masked).hexdigest() in hashes  # (the same formula, minus the secret)
    assert all(SECRET not in (p or "") and '"key"' not in (p or "") for p in ops)


def test_an_image_source_urls_credentials_are_not_stored_in_clear(env: Env) -> None:
    """A sibling: an import URL may carry a password or a signed query; the task keeps it sealed."""
    password = "url-pw-" + uuid.uuid4().hex
    url = f"http://importer:{password}@1.1.1.1:9/disk.qcow2?sig={password}"
    r = env.c.post(
        "/v1/images", json={"name": "from-url", "source_url": url, "project_id": default_project(env.c)}
    )
    assert r.status_code == 201, r.text
    assert password not in r.text
    assert password.encode() not in _db_bytes(env.server)
    with sqlite3.connect(env.server.state_dir / "novacron.db") as db:
        (params,) = db.execute("select params from tasks where id=?", (r.json()["task_id"],)).fetchone()
    assert json.loads(params)["source_url"].startswith("nce1:")


def test_cli_takes_credentials_off_the_command_line_and_rotation_keeps_backups_working(
    env: Env, tmp_path: Path
) -> None:
    from tests.integration.test_cli import Cli

    cli = Cli(tmp_path / "novacron" / "credentials.json", env.server)
    cli.ok("login", "--server", env.server.url, "--username", "admin", "--password-stdin",
           stdin=env.server.admin_password + "\n")  # fmt: skip
    secret = "cli-" + uuid.uuid4().hex
    config = _s3_config(env, "nc-" + uuid.uuid4().hex[:12])
    sets = [f"{k}={v}" for k, v in config.items() if k != "aws_secret_access_key"]
    args = [a for kv in sets for a in ("--set", kv)]
    r = cli.ok("backup", "target", "create", "s3-cli", "--type", "s3", *args,
               "--secret", "aws_secret_access_key", "--json", stdin=secret + "\n")  # fmt: skip
    assert r.json()["config"]["aws_secret_access_key"] == "***" and secret not in r.out
    r = cli.ok("backup", "target", "update", "s3-cli", "--secret", "aws_secret_access_key", "--json",
               stdin=secret + "-2\n")  # fmt: skip
    assert r.json()["secrets_set"] == ["aws_secret_access_key"]

    before = cli.ok("kek", "list", "--json").json()
    r = cli("kek", "rotate", "--json")
    assert r.code == 0, env.server.log_path.read_text()[-6000:]
    report = r.json()
    assert report["errors"] == [] and report["retired"] == before["keks"]
    assert report["targets"]["s3-private"] >= 1  # the tenant key made by the earlier backup
    assert cli.ok("kek", "list", "--json").json()["keks"] == [report["new_kek"]]
    audit = env.c.get("/v1/audit", params={"limit": 500}).json()["items"]
    rotations = [a for a in audit if "key-encryption-key" in (a.get("action") or "")]
    assert rotations and rotations[0]["outcome"] == "success"
    # the target's credentials and its tenant keys were re-wrapped: a backup still works, and reads
    backup = env.c.post("/v1/backups", json={"vm": env.vm_id, "target": "s3-private"})
    assert backup.status_code == 202, backup.text
    done = wait_task(env.c, backup.json()["task_id"], timeout_s=600)
    assert done["state"] == "succeeded", done["error"]
    verify = env.c.post(f"/v1/backups/{backup.json()['backup']['id']}/verify")
    assert verify.status_code == 202, verify.text
    assert wait_task(env.c, verify.json()["task_id"], timeout_s=600)["state"] == "succeeded"
    assert secret.encode() not in _db_bytes(env.server)
