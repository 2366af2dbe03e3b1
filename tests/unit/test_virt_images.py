"""Image inspection (qemu-img) and /proc helpers, without booting anything."""

from __future__ import annotations

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
    assert procs.cpu_time_s(me) > 0 and procs.rss_bytes(me) > 0
    pidfile = tmp_path / "x.pid"
    pidfile.write_text(f"{me}\n")
    # our own command line does not carry the pidfile path: a recycled pid is not trusted
    assert procs.live_pid(pidfile) is None
    facts = procs.host_facts(tmp_path / "not" / "yet", "tcg")
    assert facts.cpus >= 1 and facts.ram_mb > 0 and facts.disk_gb > 0


def test_tap_names_fit_ifnamsiz() -> None:
    names = {netdev.tap_name(f"vm-{n}") for n in range(1000)}
    assert len(names) == 1000 and all(len(n) <= 15 and n.startswith("nc") for n in names)
