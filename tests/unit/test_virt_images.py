"""Image inspection (qemu-img) and /proc helpers, without booting anything."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from novacron.virt import images, netdev, procs
from novacron.virt.base import InvalidImage
from tests.conftest import require


@pytest.fixture(autouse=True)
def _qemu_img() -> None:
    # skips on a bare developer machine, fails under CI
    require(shutil.which("qemu-img") is not None, "qemu-img is not installed")


def test_accepts_raw_and_qcow2(tmp_path: Path) -> None:
    raw = tmp_path / "a.raw"
    raw.write_bytes(b"\x00" * (1 << 20))
    assert images.inspect_image(raw).format == "raw"
    q = tmp_path / "a.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(q), "64M"], check=True)
    info = images.inspect_image(q)
    assert info.format == "qcow2" and info.virtual_size_bytes == 64 << 20


@pytest.mark.parametrize("fmt", ["vmdk", "vdi", "vpc"])
def test_refuses_other_formats_naming_them(tmp_path: Path, fmt: str) -> None:
    p = tmp_path / f"a.{fmt}"
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(p), "16M"], check=True)
    with pytest.raises(InvalidImage) as err:
        images.inspect_image(p)
    assert fmt in str(err.value) and "raw or qcow2" in str(err.value)


def test_refuses_text_and_odd_sizes(tmp_path: Path) -> None:
    t = tmp_path / "readme.txt"
    t.write_text("hello\n" * 1000)
    with pytest.raises(InvalidImage, match="raw"):
        images.inspect_image(t)
    t.write_text("x" * 4096)  # sector-aligned text is still text
    with pytest.raises(InvalidImage, match="text"):
        images.inspect_image(t)
    with pytest.raises(InvalidImage):
        images.inspect_image(tmp_path / "missing")


def test_proc_helpers(tmp_path: Path) -> None:
    me = os.getpid()
    assert procs.cpu_times(me)[0] > 0 and procs.rss_bytes(me) > 0
    total_s, main_thread_s = procs.cpu_times(me, {me})  # the main thread's id is the pid
    assert 0 < main_thread_s <= total_s
    pidfile = tmp_path / "x.pid"
    pidfile.write_text(f"{me}\n")
    # our own command line does not carry the pidfile path: a recycled pid is not trusted
    assert procs.live_pid(pidfile) is None
    facts = procs.host_facts(tmp_path / "not" / "yet", "tcg")
    assert facts.cpus >= 1 and facts.ram_mb > 0 and facts.disk_gb > 0


def test_tap_names_fit_ifnamsiz() -> None:
    names = {netdev.tap_name(f"vm-{n}") for n in range(1000)}
    assert len(names) == 1000 and all(len(n) <= 15 and n.startswith("nc") for n in names)


def _hostile(tmp_path: Path, name: str, *opts: str) -> Path:
    p = tmp_path / name
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *opts, str(p), "64M"], check=True)
    return p


def test_refuses_qcow2_naming_another_file_before_qemu_opens_it(tmp_path: Path) -> None:
    """A backing file (a path, or a ``json:`` specification) or an external data file could be
    any host file or another tenant's disk: refused from the header alone."""
    victim = tmp_path / "victim.raw"
    victim.write_bytes(b"another tenant's disk " * 50000)
    spec = json.dumps({"driver": "raw", "file": {"driver": "file", "filename": str(victim)}})
    hostile = {
        "backing": _hostile(tmp_path, "b.qcow2", "-u", "-b", str(victim), "-F", "raw"),
        "json": _hostile(tmp_path, "j.qcow2", "-u", "-b", f"json:{spec}", "-F", "raw"),
        # missing backing: qemu-img info would fail on it too, but it is refused first for the name
        "missing": _hostile(tmp_path, "m.qcow2", "-u", "-b", "/nonexistent/disk", "-F", "qcow2"),
    }
    for what, path in hostile.items():
        with pytest.raises(InvalidImage, match="backing file"):
            images.inspect_image(path)
        assert what and images.sniff_format(path) == "qcow2"
    data = tmp_path / "data.raw"
    data_file = _hostile(tmp_path, "d.qcow2", "-o", f"data_file={data},data_file_raw=on")
    data.write_bytes(victim.read_bytes())  # as if it named the victim
    with pytest.raises(InvalidImage, match="external data file"):
        images.inspect_image(data_file)


def test_a_vmdk_descriptor_naming_a_host_file_is_refused_unopened(tmp_path: Path) -> None:
    victim = tmp_path / "victim.raw"
    victim.write_bytes(b"\x01" * (1 << 20))
    desc = tmp_path / "disk.vmdk"
    desc.write_text(
        '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n'
        f'RW 2048 FLAT "{victim}" 0\n'
    )
    with pytest.raises(InvalidImage, match="vmdk"):
        images.inspect_image(desc)


def test_a_qcow2_header_a_guest_wrote_is_data_when_its_disk_is_restored(tmp_path: Path) -> None:
    """A guest writes a qcow2 header naming a host file at the start of its own (raw) disk; the
    restore converts it ``-f raw``: the new image holds those bytes, never the named file."""
    secret = tmp_path / "secret.raw"
    secret.write_bytes(b"SECRET-OF-THE-HOST " * 60000)
    guest_disk = _hostile(tmp_path, "guest-wrote.raw", "-u", "-b", str(secret), "-F", "raw")
    with guest_disk.open("r+b") as f:  # a raw disk of whole sectors, as a restore writes it
        f.truncate(8 << 20)
    dest = tmp_path / "restored.qcow2"
    asyncio.run(images.raw_to_qcow2(guest_disk, dest))
    info = images.inspect_image(dest)
    assert info.format == "qcow2" and info.virtual_size_bytes == 8 << 20
    out = tmp_path / "out.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(dest), str(out)], check=True)
    content = out.read_bytes()
    assert content.startswith(b"QFI\xfb") and b"SECRET-OF-THE-HOST" not in content
