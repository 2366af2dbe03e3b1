"""Where image files live on disk: one folder per image under the state directory."""

from __future__ import annotations

import hashlib
from pathlib import Path

from novacron.config import Settings


def image_dir(settings: Settings, image_id: str) -> Path:
    return settings.images_dir / image_id


def image_disk(settings: Settings, image_id: str) -> Path:
    return image_dir(settings, image_id) / "disk"


def image_kernel(settings: Settings, image_id: str) -> Path:
    return image_dir(settings, image_id) / "kernel"


def image_initrd(settings: Settings, image_id: str) -> Path:
    return image_dir(settings, image_id) / "initrd"


def mac_for(vm_id: str) -> str:
    """A stable, locally administered MAC in QEMU's 52:54:00 range, derived from the VM id."""
    digest = hashlib.sha256(vm_id.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])
