"""KEKs in a real PKCS#11 token (SoftHSM2) and a real Vault-API transit engine (OpenBao dev server).

Each provider wraps and unwraps where the KEK lives, rotates, and retires; a backup store keyed by
it works; an install moves from the file KEK to Vault by a rotation; and a real server configured
with each provider seals its signing key there and still issues working tokens.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from novacron.backup.store import ChunkStore
from novacron.backup.targets import LocalTarget
from novacron.identity.encryption import EncryptionService
from novacron.identity.kek import KeyService
from novacron.identity.kek_remote import PKCS11KEK, VaultKEK
from tests.conftest import destroy_server, make_server, require, short_tmpdir
from tests.services.kms import Bao, KMSUnavailable, SoftHSM, start_bao, start_softhsm

CHUNK = 64 * 1024


@pytest.fixture(scope="module")
def hsm() -> SoftHSM:
    try:
        return start_softhsm(short_tmpdir("hsm"))
    except KMSUnavailable as exc:
        require(False, str(exc))
        raise


@pytest.fixture(scope="module")
def bao() -> Iterator[Bao]:
    try:
        server = start_bao(short_tmpdir("bao"))
    except KMSUnavailable as exc:
        require(False, str(exc))
        raise
    try:
        yield server
    finally:
        server.stop()


def _rotation_contract(keys: KeyService) -> None:
    """Seal, rotate, re-wrap, retire: the old KEK then opens nothing, the re-wrapped value opens."""
    enc = EncryptionService(keys)
    sealed = enc.seal_text("-----BEGIN PRIVATE KEY-----", "signing_keys.private_pem:key-1")
    assert enc.open_text(sealed, "signing_keys.private_pem:key-1") == "-----BEGIN PRIVATE KEY-----"
    with pytest.raises(Exception):  # noqa: B017 - each provider raises its own error for a wrong context
        enc.open_text(sealed, "signing_keys.private_pem:key-2")
    old = enc.kek_of(sealed)
    new = keys.rotate()
    assert new != old and keys.current_id == new
    rewrapped = enc.rewrap(sealed, "signing_keys.private_pem:key-1")
    assert rewrapped is not None and enc.kek_of(rewrapped) == new
    keys.retire(old)
    assert old not in keys.kek_ids()
    assert enc.open_text(rewrapped, "signing_keys.private_pem:key-1") == "-----BEGIN PRIVATE KEY-----"
    with pytest.raises(Exception):  # noqa: B017
        enc.open_text(sealed, "signing_keys.private_pem:key-1")


def _backup_roundtrip(keys: KeyService, tmp_path: Path) -> None:
    store = ChunkStore(LocalTarget(tmp_path / "repo"), keys, chunk_size=CHUNK)
    data = os.urandom(CHUNK * 2 + 7)
    store.write_snapshot("tenant-a", "s1", "vda", lambda off, n: data[off : off + n], len(data))
    assert store.read_snapshot("tenant-a", "s1", "vda", 0, len(data)) == data


def test_pkcs11_token_holds_a_non_extractable_kek_and_rotates(hsm: SoftHSM, tmp_path: Path) -> None:
    provider = PKCS11KEK(hsm.module, hsm.token, hsm.pin)
    keys = KeyService(tmp_path / "kek", provider=provider)
    assert keys.kind == "pkcs11" and keys.current_id.startswith("pkcs11:novacron-kek-")
    import pkcs11
    from pkcs11 import Attribute

    current = keys.current_id
    with provider._session() as s:
        key = provider._key(s, current)
        assert key[Attribute.EXTRACTABLE] is False and key[Attribute.SENSITIVE] is True
        with pytest.raises(pkcs11.exceptions.PKCS11Error):
            key[Attribute.VALUE]  # the KEK's bytes never leave the token
    _rotation_contract(keys)
    _backup_roundtrip(keys, tmp_path)


def test_vault_transit_kek_rotates_and_retires_versions(bao: Bao, tmp_path: Path) -> None:
    keys = KeyService(
        tmp_path / "kek", provider=VaultKEK(bao.url, bao.token, key="unit-" + os.urandom(3).hex())
    )
    assert keys.kind == "vault" and keys.current_id.endswith(":v1")
    _rotation_contract(keys)
    _backup_roundtrip(keys, tmp_path)


def test_an_install_moves_from_the_file_kek_to_vault_by_rotating(bao: Bao, tmp_path: Path) -> None:
    file_keys = KeyService(tmp_path / "kek")
    before = EncryptionService(file_keys).seal_text("secret", "a")
    file_kek = file_keys.current_id
    keys = KeyService(
        tmp_path / "kek", provider=VaultKEK(bao.url, bao.token, key="move-" + os.urandom(3).hex())
    )
    enc = EncryptionService(keys)
    assert enc.open_text(before, "a") == "secret"  # the file KEK still unwraps what it wrapped
    after = enc.rewrap(before, "a")
    assert after is not None and enc.kek_of(after).startswith("vault:")
    keys.retire(file_kek)
    assert not (tmp_path / "kek" / f"{file_kek}.kek").exists()
    assert enc.open_text(after, "a") == "secret"


def _sealed_signing_key(server_state: Path) -> str:
    with sqlite3.connect(server_state / "novacron.db") as db:
        (value,) = db.execute("select private_pem from signing_keys").fetchone()
    return str(value)


@pytest.mark.parametrize("provider", ["pkcs11", "vault"])
def test_a_server_keeps_its_signing_key_under_the_configured_provider(
    provider: str, request: pytest.FixtureRequest
) -> None:
    if provider == "pkcs11":
        hsm = request.getfixturevalue("hsm")
        pin_file = short_tmpdir("pin") / "pin"
        pin_file.write_text(hsm.pin)
        env = {
            "NOVACRON_KEK_PROVIDER": "pkcs11",
            "NOVACRON_KEK_PKCS11_TOKEN": hsm.token,
            "NOVACRON_KEK_PKCS11_PIN_FILE": str(pin_file),
            "SOFTHSM2_CONF": str(hsm.conf),
        }
    else:
        bao = request.getfixturevalue("bao")
        env = {
            "NOVACRON_KEK_PROVIDER": "vault",
            "NOVACRON_KEK_VAULT_URL": bao.url,
            "NOVACRON_KEK_VAULT_TOKEN": bao.token,
            "NOVACRON_KEK_VAULT_KEY": "server-" + os.urandom(3).hex(),
        }
    server = make_server(NOVACRON_COMPUTE_DRIVER="simulated", NOVACRON_NETWORK_BACKEND="none", **env)
    server.start(timeout_s=120)
    try:
        with server.client() as c:
            keks = c.get("/v1/key-encryption-keys").json()
            assert keks["provider"] == provider
            from novacron.identity.encryption import EncryptionService as Enc

            assert Enc.kek_of(_sealed_signing_key(server.state_dir)) == keks["current"]
            report = c.post("/v1/key-encryption-keys/rotate", json={}).json()
            assert report["errors"] == [] and report["rewrapped"] >= 1
            assert Enc.kek_of(_sealed_signing_key(server.state_dir)) == report["new_kek"]
        # after a restart the server opens its rotated signing key and signs working tokens
        server.stop()
        server.start(timeout_s=120)
        with server.client() as c:
            assert c.get("/v1/key-encryption-keys").json()["current"] == report["new_kek"]
            assert httpx.get(f"{server.url}/v1/vms", headers=c.headers).status_code == 200
    finally:
        destroy_server(server)


def test_a_vault_version_below_one_still_in_use_is_not_retired(bao: Bao, tmp_path: Path) -> None:
    """Retiring Vault version N disables every version up to N: with v1 still wrapping a value,
    retiring v2 (unused) would make that value unreadable, so v2 is kept."""
    vault = VaultKEK(bao.url, bao.token, key="keep-" + os.urandom(3).hex())
    keys = KeyService(tmp_path / "kek", provider=vault)
    enc = EncryptionService(keys)
    v1 = keys.current_id
    still_v1 = enc.seal_text("secret", "a")
    v2 = keys.rotate()
    keys.rotate()
    retired, kept = keys.retire_unused([v1, v2], {enc.kek_of(still_v1)})
    assert retired == [] and kept == [v1, v2]
    assert enc.open_text(still_v1, "a") == "secret"


@pytest.mark.parametrize("provider", ["pkcs11", "vault"])
def test_an_unreachable_hsm_or_vault_stops_the_server_with_one_clear_line(
    provider: str, request: pytest.FixtureRequest
) -> None:
    """Vault down or a wrong PIN: exit 2 with the reason and the setting to check, no traceback,
    and the token or PIN never printed."""
    import subprocess
    import sys

    if provider == "pkcs11":
        hsm = request.getfixturevalue("hsm")
        env = {
            "NOVACRON_KEK_PKCS11_TOKEN": hsm.token,
            "NOVACRON_KEK_PKCS11_PIN": "98765-wrong-pin",
            "SOFTHSM2_CONF": str(hsm.conf),
        }
        secret, place = "98765-wrong-pin", "PKCS#11 token"
    else:
        env = {"NOVACRON_KEK_VAULT_URL": "http://127.0.0.1:1", "NOVACRON_KEK_VAULT_TOKEN": "s.Sup3rSecretTok"}
        secret, place = "s.Sup3rSecretTok", "Vault server"
    server = make_server(NOVACRON_KEK_PROVIDER=provider, **env)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "novacron.server"],
            env=server.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        destroy_server(server)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output and secret not in output
    assert f"{provider} key-encryption key is unavailable" in output and place in output
    assert "NOVACRON_KEK_" in output
