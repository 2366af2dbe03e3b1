"""NoCloud seed ISO: label cidata, real names via Rock Ridge and Joliet, content round-trips."""

from __future__ import annotations

import io
from pathlib import Path

import pycdlib

from novacron.virt.cidata import build_cidata_iso, read_cidata_iso, render_meta_data, write_cidata_iso


def test_meta_data_has_instance_id_and_hostname() -> None:
    text = render_meta_data({"project": "p1", "tags": ["a"]}, "i-123", "web-1")
    lines = text.splitlines()
    assert "instance-id: i-123" in lines and "local-hostname: web-1" in lines
    assert 'tags: ["a"]' in lines
    assert 'local-hostname: "odd name"' in render_meta_data({}, "i", "odd name")


def test_iso_contents_label_and_names(tmp_path: Path) -> None:
    path = tmp_path / "seed.iso"
    user = "#!/bin/sh\necho hello\n"
    net = "version: 2\nethernets: {}\n"
    write_cidata_iso(path, render_meta_data({}, "i-1", "vm1"), user, network_config=net)
    assert not (tmp_path / "seed.iso.tmp").exists()
    files = read_cidata_iso(path)
    assert files["user-data"] == user
    assert files["network-config"] == net
    assert "local-hostname: vm1" in files["meta-data"]

    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "cidata"
        assert iso.has_rock_ridge() and iso.has_joliet()
        buf = io.BytesIO()
        iso.get_file_from_iso_fp(buf, joliet_path="/user-data")
        assert buf.getvalue().decode() == user
        names = sorted(c.file_identifier().decode() for c in iso.list_children(iso_path="/"))
        assert "USERDATA.;1" in names and "METADATA.;1" in names
    finally:
        iso.close()


def test_optional_files_absent_by_default() -> None:
    data = build_cidata_iso("instance-id: x\n")
    assert data[0x8001:0x8006] == b"CD001"
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(data))
    try:
        names = [c.file_identifier().decode() for c in iso.list_children(iso_path="/")]
        assert not any(n.startswith("NETWORKC") for n in names)
    finally:
        iso.close()
