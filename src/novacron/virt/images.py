"""Disk images through ``qemu-img``: inspection (raw and qcow2 only), overlays, flattening.

An image file is a tenant's bytes, so ``qemu-img`` is never let loose on it: the format is read
from the header here first (so no driver probes it: a VMDK descriptor, a qcow2 backing file or an
external data file could name any file of the host, or another tenant's disk), a qcow2 that names
another file is refused before ``qemu-img`` opens it, and every later command states the format
(``-f``). The same holds for bytes a guest wrote: a restored disk is converted ``-f raw``, since a
guest can write a qcow2 header at the start of its own disk.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
from pathlib import Path
from typing import Any

from novacron.virt.base import DriverError, ImageInfo, InstanceSpec, InvalidImage

ACCEPTED_FORMATS = ("raw", "qcow2")
QEMU_IMG = "qemu-img"


def _looks_like_text(head: bytes) -> bool:
    """True for a printable text head (a raw disk starts with boot code, a table or zeros)."""
    if not head or not head.strip(b"\x00"):
        return False
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\r\n\t\f" for c in text)


#: (offset, magic, format) of the formats qemu knows, so a file is named without probing it
_MAGICS = (
    (0, b"QFI\xfb", "qcow2"), (0, b"QED\x00", "qed"), (0, b"KDMV", "vmdk"), (0, b"COWD", "vmdk"),
    (0, b"# Disk DescriptorFile", "vmdk"), (0, b"vhdxfile", "vhdx"), (0, b"conectix", "vpc"),
    (0x40, b"\x7f\x10\xda\xbe", "vdi"), (0, b"LUKS\xba\xbe", "luks"), (0, b"WithoutFreeSpace", "parallels"),
    (0, b"WithouFreSpacExt", "parallels"), (0, b"Bochs Virtual HD Image", "bochs"),
    (0, b"#!/bin/sh\n#V2.0 Format", "cloop"),
)  # fmt: skip
_QCOW2_EXTERNAL_DATA = 1 << 2
_QCOW2_DATA_FILE_EXT = 0x44415441


def sniff_format(path: Path) -> str:
    """The format the file's header (or, for vpc and dmg, its footer) says, without qemu."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
        size = fh.seek(0, 2)
        fh.seek(max(size - 512, 0))
        tail = fh.read(512)
    for offset, magic, fmt in _MAGICS:
        if head[offset : offset + len(magic)] == magic:
            return "qcow" if fmt == "qcow2" and head[4:8] == b"\x00\x00\x00\x01" else fmt
    if tail.startswith(b"conectix"):
        return "vpc"
    if tail.startswith(b"koly"):
        return "dmg"
    return "raw"


def check_qcow2_header(path: Path) -> None:
    """Refuse a qcow2 whose header names another file (backing file, external data file): the
    name could be any host path, a ``json:`` specification or another tenant's disk."""
    with open(path, "rb") as fh:
        head = fh.read(65536)
    if len(head) < 72:
        raise InvalidImage(f"image {path.name} has a truncated qcow2 header")
    version, backing_offset = struct.unpack(">IQ", head[4:16])
    if backing_offset:
        raise InvalidImage(
            f"image {path.name} is a qcow2 overlay with a backing file; upload a standalone image "
            f"(qemu-img convert -O qcow2) instead"
        )
    if version < 3:
        return
    incompatible = struct.unpack(">Q", head[72:80])[0]
    header_length = struct.unpack(">I", head[100:104])[0] if len(head) >= 104 else 104
    offset, extensions = header_length, set()
    while offset + 8 <= len(head):  # header extensions: type, length, data padded to 8 bytes
        kind, length = struct.unpack(">II", head[offset : offset + 8])
        if kind == 0:
            break
        extensions.add(kind)
        offset += 8 + (length + 7) // 8 * 8
    if incompatible & _QCOW2_EXTERNAL_DATA or _QCOW2_DATA_FILE_EXT in extensions:
        raise InvalidImage(f"image {path.name} uses an external data file, which is not accepted")


def qemu_img_info(path: Path, fmt: str | None = None) -> dict[str, Any]:
    """``qemu-img info``; pass ``fmt`` for any file whose bytes are not the platform's own."""
    try:
        res = subprocess.run(
            [QEMU_IMG, "info", "--output=json", "--force-share", *(["-f", fmt] if fmt else []), str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DriverError(f"cannot run {QEMU_IMG} info on {path}: {e}") from e
    if res.returncode != 0:
        raise InvalidImage(f"{path} is not a readable disk image: {res.stderr.strip()}")
    info: dict[str, Any] = json.loads(res.stdout)
    return info


def inspect_image(path: Path) -> ImageInfo:
    """Validate an image file: raw or qcow2 with no backing or external data file."""
    path = Path(path)
    if not path.is_file():
        raise InvalidImage(f"image {path} does not exist or is not a regular file")
    fmt = sniff_format(path)
    accepted = " or ".join(ACCEPTED_FORMATS)
    if fmt not in ACCEPTED_FORMATS:
        raise InvalidImage(f"image {path.name} is in format {fmt!r}; only {accepted} images are accepted")
    if fmt == "qcow2":
        check_qcow2_header(path)
    info = qemu_img_info(path, fmt)
    if str(info.get("format")) != fmt:
        raise InvalidImage(f"image {path.name} is not a valid {fmt} image")
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise InvalidImage(
            f"image {path.name} is a {fmt} overlay with a backing file; upload a standalone image "
            f"(qemu-img convert -O qcow2) instead"
        )
    fmt_specific = (info.get("format-specific") or {}).get("data") or {}
    if fmt_specific.get("data-file"):
        raise InvalidImage(f"image {path.name} uses an external data file, which is not accepted")
    size = int(info.get("virtual-size", 0))
    if fmt == "raw":
        with open(path, "rb") as fh:
            head = fh.read(4096)
        if size == 0 or size % 512:
            raise InvalidImage(
                f"image {path.name} was detected as raw but its size ({size} bytes) is not a whole number "
                f"of 512-byte sectors; it is not a disk image (accepted formats: {accepted})"
            )
        if _looks_like_text(head):
            raise InvalidImage(
                f"image {path.name} was detected as raw but contains text, not a disk "
                f"(accepted formats: {accepted})"
            )
    return ImageInfo(format=fmt, virtual_size_bytes=size, actual_size_bytes=int(info.get("actual-size", 0)))


async def run_tool(*cmd: str, timeout_s: float = 600.0) -> str:
    """Run a command without blocking the event loop; DriverError with its stderr on failure."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DriverError(f"{cmd[0]} timed out after {timeout_s:.0f} s: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        msg = err.decode(errors="replace").strip()
        raise DriverError(f"{' '.join(cmd)} failed ({proc.returncode}): {msg}")
    return out.decode(errors="replace")


async def raw_to_qcow2(raw: Path, dest: Path) -> None:
    """Convert a raw disk (bytes a guest wrote) to qcow2 at ``dest``. ``-f raw``: were the format
    probed, a guest that wrote a qcow2 header naming a backing file would get that file's content."""
    await run_tool(
        QEMU_IMG, "convert", "-q", "-f", "raw", "-O", "qcow2", str(raw), str(dest), timeout_s=86400
    )


async def create_overlay(base: Path, base_format: str, dest: Path, size_bytes: int | None) -> None:
    """A qcow2 overlay ``dest`` backed by ``base`` (absolute path), written atomically."""
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    cmd = [
        QEMU_IMG,
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        str(Path(base).resolve()),
        "-F",
        base_format,
        str(tmp),
    ]
    if size_bytes:
        cmd.append(str(size_bytes))
    await run_tool(*cmd)
    tmp.replace(dest)


async def point_backing(disk: Path, base: Path, base_format: str) -> None:
    """Make ``disk`` name ``base`` as its backing file when it names another path.

    A disk on shared storage moves between hosts, while each host caches the image in its own
    store: the content is the same (checked by SHA-256 on fetch), so an unsafe rebase, which only
    rewrites the name, is correct.
    """
    info = await asyncio.to_thread(qemu_img_info, disk)
    want = str(Path(base).resolve())
    if not info.get("backing-filename"):
        return  # a standalone disk (a full clone's) reads nothing from the image: no name to fix
    if Path(info["backing-filename"]).parent.name == ".snapbases":  # virt/snapclone.py: a linked
        disk = Path(info["backing-filename"])  # clone of a snapshot; its base names the image
        info = await asyncio.to_thread(qemu_img_info, disk)
    if info.get("backing-filename") != want:
        await run_tool(QEMU_IMG, "rebase", "-q", "-u", "-b", want, "-F", base_format, str(disk))


async def grow(disk: Path, size_bytes: int) -> None:
    info = await asyncio.to_thread(qemu_img_info, disk)
    if int(info.get("virtual-size", 0)) < size_bytes:
        await run_tool(QEMU_IMG, "resize", "-q", str(disk), str(size_bytes))


async def flatten(src: Path, dest: Path) -> ImageInfo:
    """Convert ``src`` (with its backing chain) into a standalone qcow2 at ``dest``, atomically."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        await run_tool(QEMU_IMG, "convert", "-q", "-O", "qcow2", str(src), str(tmp))
        tmp.replace(dest)
    finally:
        tmp.unlink(missing_ok=True)
    return await asyncio.to_thread(inspect_image, dest)


async def prepare_disk(disk: Path, spec: InstanceSpec, *, rebase: bool, resize: bool) -> None:
    """The VM's root disk, mode 0600: a new overlay on its image at the spec's size; an existing
    one re-pointed at this host's copy of the image (``rebase``: it may come from another host on
    shared storage, an HA restart) and grown to the spec's size (``resize``: the VM is stopped)."""
    want = spec.disk_gb * (1 << 30)
    if disk.exists() and rebase:
        fmt = spec.image_format or (await asyncio.to_thread(inspect_image, spec.image_path)).format
        await point_backing(disk, spec.image_path, fmt)
    if not disk.exists():
        info = await asyncio.to_thread(inspect_image, spec.image_path)
        if spec.image_format and spec.image_format != info.format:
            raise InvalidImage(
                f"image {spec.image_path.name} is {info.format}, but the VM declares {spec.image_format}"
            )
        if info.virtual_size_bytes > want:  # the control plane checks this; a stale spec must not pass
            raise InvalidImage(
                f"image {spec.image_path.name} has a {info.virtual_size_bytes}-byte virtual size, larger "
                f"than the VM's {spec.disk_gb} GiB disk"
            )
        await create_overlay(
            spec.image_path, info.format, disk, want if want > info.virtual_size_bytes else None
        )
    elif resize:
        await grow(disk, want)
    os.chmod(disk, 0o600)  # the tenant's data: QEMU (this account: root here) alone reads it
