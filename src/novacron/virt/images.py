"""Disk images through ``qemu-img``: inspection (raw and qcow2 only), overlays, flattening."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

from novacron.virt.base import DriverError, ImageInfo, InvalidImage

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


def qemu_img_info(path: Path) -> dict[str, Any]:
    try:
        res = subprocess.run(
            [QEMU_IMG, "info", "--output=json", "--force-share", str(path)],
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
    info = qemu_img_info(path)
    fmt = str(info.get("format", "unknown"))
    accepted = " or ".join(ACCEPTED_FORMATS)
    if fmt not in ACCEPTED_FORMATS:
        raise InvalidImage(f"image {path.name} is in format {fmt!r}; only {accepted} images are accepted")
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
