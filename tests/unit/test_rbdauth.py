"""cephx for QEMU's rbd driver: what a location with a client and keyring becomes on a host."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from novacron.virt import rbdauth
from novacron.virt.base import DriverError, VolumeAttachment
from novacron.virt.volumes import argv, blockdev, node_name


def test_a_keyring_location_is_a_user_and_a_key_secret_whose_file_only_the_host_reads(tmp_path: Path) -> None:
    keyring = tmp_path / "client.novacron.keyring"
    keyring.write_text("[client.novacron]\n\tkey = AQAPtRZrRju/DxAAoOcWLj52a7y1+2eb8BOLwg==\n")
    where = f"rbd:rbd/vol-7:conf=/etc/ceph/ceph.conf:id=novacron:keyring={keyring}"
    vol = VolumeAttachment("vol-7", "rbd", where, "vol-7")
    node = blockdev(vol)["file"]["file"]  # throttle filter -> raw format node -> rbd
    assert node["user"] == "novacron" and node["auth-client-required"] == ["cephx"]
    assert node["key-secret"] == rbdauth.secret_id(node_name("vol-7"))
    options = argv((vol,), tmp_path)
    secret = json.loads(options[options.index("-object") + 1])
    assert secret["qom-type"] == "secret" and secret["format"] == "base64"
    key_file = Path(secret["file"])
    assert key_file.read_text() == "AQAPtRZrRju/DxAAoOcWLj52a7y1+2eb8BOLwg=="
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "AQAP" not in " ".join(options)  # the key itself never on a command line
    # without cephx: no secret object, the plain options of before
    plain = VolumeAttachment("vol-8", "rbd", "rbd:rbd/vol-8:conf=/etc/ceph/ceph.conf", "vol-8")
    assert '"secret"' not in " ".join(argv((plain,), tmp_path))


def test_a_keyring_without_the_client_names_both_settings(tmp_path: Path) -> None:
    keyring = tmp_path / "k"
    keyring.write_text("[client.admin]\n\tkey = AQAPtRZrRju/DxAAoOcWLj52a7y1+2eb8BOLwg==\n")
    where = rbdauth.parse(f"rbd:rbd/vol-7:conf=/c:id=novacron:keyring={keyring}")
    with pytest.raises(DriverError, match="NOVACRON_RBD_KEYRING.*client.novacron.*NOVACRON_RBD_USER"):
        rbdauth.secret_object(where, "vol1", tmp_path)
