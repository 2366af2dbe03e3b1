"""The encryption service, the file KEK provider and the private state directory, in process."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import select

from novacron.context import Context
from novacron.identity.encryption import (
    PREFIX,
    EncryptionService,
    is_sealed,
    redact,
    scrub,
    secrets_set,
)
from novacron.identity.kek import KeyService, kek_dir
from novacron.private import MARKER, harden_once, private_tree, write_private

PEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----\n"


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


@pytest.fixture
def enc(tmp_path: Path) -> EncryptionService:
    return EncryptionService(KeyService(tmp_path / "kek"))


def test_sealed_value_names_its_kek_and_version_and_is_bound_to_its_place(enc: EncryptionService) -> None:
    sealed = enc.seal_text(PEM, "signing_keys.private_pem:key-1")
    assert sealed.startswith(PREFIX) and "PRIVATE KEY" not in sealed
    assert enc.kek_of(sealed) == enc.keys.current_id
    assert enc.open_text(sealed, "signing_keys.private_pem:key-1") == PEM
    # copied into another row, it does not open
    with pytest.raises(InvalidTag):
        enc.open_text(sealed, "signing_keys.private_pem:key-2")


def test_another_kek_cannot_open_it(tmp_path: Path, enc: EncryptionService) -> None:
    sealed = enc.seal_text(PEM, "x")
    stranger = EncryptionService(KeyService(tmp_path / "other"))
    with pytest.raises(KeyError):
        stranger.open_text(sealed, "x")


def test_rotation_rewraps_and_the_old_kek_can_be_retired(enc: EncryptionService) -> None:
    sealed = enc.seal_text(PEM, "a")
    old = enc.keys.current_id
    new = enc.keys.rotate()
    assert enc.rewrap(sealed, "a") is not None
    rewrapped = enc.rewrap(sealed, "a")
    assert rewrapped is not None and enc.kek_of(rewrapped) == new
    assert enc.rewrap(rewrapped, "a") is None  # already current
    enc.keys.retire(old)
    assert enc.open_text(rewrapped, "a") == PEM
    with pytest.raises(KeyError):
        enc.open_text(sealed, "a")  # still under the retired KEK
    with pytest.raises(ValueError):
        enc.keys.retire(new)


def test_secret_fields_sealed_one_by_one_and_never_shown(enc: EncryptionService) -> None:
    config = {
        "bucket": "b",
        "endpoint_url": "http://127.0.0.1:9",
        "aws_access_key_id": "AKIAEXAMPLE",
        "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG",
        "connection_string": "AccountName=a;AccountKey=c2VjcmV0",
        "credentials": {"private_key": "-----BEGIN PRIVATE KEY-----"},
    }
    sealed = enc.seal_fields(config, "backup_targets.config:bkt-1")
    assert sealed["bucket"] == "b" and sealed["aws_access_key_id"] == "AKIAEXAMPLE"
    assert all(is_sealed(sealed[k]) for k in ("aws_secret_access_key", "connection_string", "credentials"))
    assert enc.open_fields(sealed, "backup_targets.config:bkt-1") == config
    assert redact(sealed)["aws_secret_access_key"] == "***" and redact(sealed)["bucket"] == "b"
    assert secrets_set(sealed) == ["aws_secret_access_key", "connection_string", "credentials"]
    message = "the target does not answer: bad key wJalrXUtnFEMI/K7MDENG in AccountName=a;AccountKey=c2VjcmV0"
    assert "wJalr" not in scrub(message, config) and "c2VjcmV0" not in scrub(message, config)


def test_kek_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        keys = KeyService(tmp_path / "kek")
        keys.rotate()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "kek") == 0o700
    assert {_mode(p) for p in (tmp_path / "kek").iterdir()} == {0o600}


def test_backup_keys_of_an_older_install_move_to_the_one_kek_directory(tmp_path: Path) -> None:
    legacy = KeyService(tmp_path / "backup-keys")
    wrapped = legacy.wrap(b"k" * 32, "tenant-1")
    moved = KeyService(kek_dir(tmp_path))
    assert not (tmp_path / "backup-keys").exists()
    assert moved.unwrap(wrapped, "tenant-1") == b"k" * 32


def test_an_older_installs_world_readable_tree_is_tightened_once_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "state"
    (state / "instances" / "vm-1").mkdir(parents=True)
    os.chmod(state, 0o755)
    os.chmod(state / "instances", 0o755)
    for name, mode in (
        ("novacron.db", 0o644),
        ("novacron.db-wal", 0o644),
        ("instances/vm-1/seed.iso", 0o644),
    ):
        (state / name).write_bytes(b"x")
        os.chmod(state / name, mode)
    (state / "script.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(state / "script.sh", 0o755)
    with caplog.at_level(logging.WARNING, logger="novacron.private"):
        changes = harden_once(state)
    assert any("novacron.db: 0644 -> 0600" in c for c in changes)
    assert "seed.iso: 0644 -> 0600" in caplog.text
    for p in [state, *state.rglob("*")]:
        want = 0o700 if p.is_dir() or p.name == "script.sh" else 0o600
        assert _mode(p) == want, p
    os.chmod(state / "novacron.db", 0o644)
    assert harden_once(state) == []  # the marker: walked once only
    assert (state / MARKER).exists()
    assert private_tree(state) == [f"{state / 'novacron.db'}: 0644 -> 0600"]


def test_write_private_ignores_a_wide_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "f", "secret")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "f") == 0o600


def test_a_replica_without_the_platforms_keks_refuses_to_start_and_says_why(tmp_path: Path) -> None:
    from novacron.db.base import Database
    from novacron.db.migrate import upgrade
    from novacron.db.models import SigningKey
    from novacron.identity.keys import generate_key_pair, private_pem_aad
    from novacron.identity.sealing import KEKMismatch, check_openable

    db = Database(f"sqlite:///{tmp_path}/novacron.db")
    upgrade(db)
    first = EncryptionService(KeyService(tmp_path / "kek-a"))
    private_pem, public_pem = generate_key_pair()
    with db.session() as s:
        sealed = first.seal_text(private_pem, private_pem_aad("key-1"))
        s.add(SigningKey(kid="key-1", alg="ES256", private_pem=sealed, public_pem=public_pem, active=True))
    check_openable(db, first)
    with pytest.raises(KEKMismatch, match="NOVACRON_KEK_DIR"):
        check_openable(db, EncryptionService(KeyService(tmp_path / "kek-b")))


def _host_ctx(tmp_path: Path) -> Context:
    """A context on a fresh database with one host, ``host-1`` (the control plane's side of hostops)."""
    from novacron.config import Settings
    from novacron.db.base import Database
    from novacron.db.migrate import upgrade
    from novacron.db.models import Host

    settings = Settings(state_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/novacron.db")
    db = Database(settings.database_url)
    upgrade(db)
    with db.session() as s:
        s.add(Host(id="host-1", name="h1", driver="qemu", accelerator="tcg", cpus=1, ram_mb=512, traits=[]))
    return Context(settings=settings, db=db, tokens=None)  # type: ignore[arg-type]


def test_keys_handed_to_an_agent_wait_sealed_and_leave_the_row_with_the_answer(tmp_path: Path) -> None:
    from novacron.compute import hostops
    from novacron.db.models import HostOperation

    ctx = _host_ctx(tmp_path)
    db = ctx.db
    handed = {"key": "dGVuYW50LWRhdGEta2V5", "target": {"config": {"aws_secret_access_key": "S3CR3T"}}}
    hostops._queue(ctx, "op-1", "host-1", None, "backup_disk", "vm-1", {"secrets": handed, "x": 1})
    with db.read_session() as s:
        stored = s.get(HostOperation, "op-1")
        assert stored is not None
        assert "S3CR3T" not in str(stored.payload) and stored.payload["secrets"]["sealed"].startswith(PREFIX)
    (op,) = hostops.claim(ctx, "host-1")
    assert op["payload"] == {"secrets": handed, "x": 1}  # the agent gets them in clear, over TLS
    assert hostops.complete(ctx, "host-1", "op-1", {}, None)
    with db.read_session() as s:
        stored = s.get(HostOperation, "op-1")
        assert stored is not None and "secrets" not in stored.payload
    assert b"S3CR3T" not in (tmp_path / "novacron.db").read_bytes()


def test_a_one_off_requests_answer_is_not_kept_in_the_database(tmp_path: Path) -> None:
    """A console read's answer (the guest's console: cloud-init prints generated passwords there)
    stayed in ``host_operations.result`` for good: a stolen database had every console ever read."""
    import threading

    from novacron.agent.protocol import ConsoleRead
    from novacron.compute import hostops
    from novacron.db.models import HostOperation

    ctx = _host_ctx(tmp_path)
    db = ctx.db
    console = "ci-info: password for ubuntu is Hunter2-" + os.urandom(6).hex()
    answers: list[dict[str, object]] = []
    reader = threading.Thread(
        target=lambda: answers.append(hostops.call_blocking(ctx, "host-1", ConsoleRead(), "vm-1", 30))
    )
    reader.start()
    while not (ops := hostops.claim(ctx, "host-1")):  # the agent's side
        reader.join(0.05)
    assert hostops.complete(ctx, "host-1", ops[0]["id"], {"text": console}, None)
    reader.join(30)
    assert answers == [{"text": console}]  # the caller got it
    with db.read_session() as s:
        assert s.scalar(select(HostOperation.id)) is None
    assert console.encode() not in (tmp_path / "novacron.db").read_bytes() + (
        (tmp_path / "novacron.db-wal").read_bytes() if (tmp_path / "novacron.db-wal").exists() else b""
    )
