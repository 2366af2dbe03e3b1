#!/usr/bin/env python3
"""Build the test guest's Secure Boot disks from Debian's signed boot chain.

OVMF's Secure Boot template (``OVMF_VARS_4M.ms.fd``) trusts Microsoft's keys only, and Debian's
kernel is signed by Debian's CA, which Microsoft-signed shim carries: so a Secure Boot guest boots
shim, shim verifies GRUB, GRUB asks shim to verify the kernel. A direct ``-kernel`` boot skips
that chain and OVMF refuses the kernel, so the guest gets a disk of its own:

  secureboot.qcow2          one FAT filesystem (no partition table: OVMF boots a "superfloppy")
                            holding /EFI/BOOT/BOOTX64.EFI (shim), grubx64.efi (signed GRUB),
                            grub.cfg in both places GRUB looks, and the test guest's vmlinuz
                            (Debian-signed) and initrd.img with its command line
  secureboot-tampered.qcow2 the same with one byte of the kernel changed: its signature no longer
                            matches, so Secure Boot must refuse it (the test's proof that the
                            chain is enforced, not just present)

Inputs: guest/out (made by build.py) and the packages shim-signed and grub-efi-amd64-signed,
downloaded (never installed: their scripts would install a boot loader on the host).
Idempotent like build.py. Run as root on Debian 12: ``python3 guest/secureboot.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from build import run  # noqa: E402  (the builder's own: this runs beside it, stdlib only)

PACKAGES = {
    "shim-signed": "usr/lib/shim/shimx64.efi.signed",
    "grub-efi-amd64-signed": "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
}
TOOLS = {"mkfs.vfat": "dosfstools", "mcopy": "mtools", "qemu-img": "qemu-utils"}
FAT_KIB = 32768  # shim 1 MiB + GRUB 4 MiB + kernel 8 MiB + initrd: room to spare
OUTPUTS = ("secureboot.qcow2", "secureboot-tampered.qcow2")


def log(msg: str) -> None:
    print(f"[guest/secureboot] {msg}", file=sys.stderr, flush=True)


def ensure_tools() -> None:
    import shutil

    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        log(f"apt-get install {' '.join(missing)}")
        run("apt-get", "install", "-y", "-q", *missing)


def fetch_boot_chain(cache: Path, root: Path) -> dict[str, Path]:
    """The signed shim and GRUB, from their .debs downloaded once into ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    files = {}
    for pkg, inner in PACKAGES.items():
        debs = sorted(cache.glob(f"{pkg}_*.deb"))
        if not debs:
            log(f"apt-get download {pkg}")
            run("apt-get", "download", pkg, cwd=cache)
            debs = sorted(cache.glob(f"{pkg}_*.deb"))
        run("dpkg-deb", "-x", str(debs[-1]), str(root))
        files[pkg] = root / inner
    return files


def grub_cfg(cmdline: str) -> str:
    return f"set timeout=0\nlinux /vmlinuz {cmdline}\ninitrd /initrd.img\nboot\n"


def esp_disk(dest: Path, files: dict[str, Path], kernel: Path, initrd: Path, cmdline: str, tmp: Path) -> None:
    """A qcow2 disk holding one FAT filesystem with the boot chain, the kernel and its initrd."""
    fat, cfg = tmp / f"{dest.stem}.fat", tmp / "grub.cfg"
    cfg.write_text(grub_cfg(cmdline))
    fat.unlink(missing_ok=True)
    run("mkfs.vfat", "-C", "-n", "NCESP", str(fat), str(FAT_KIB))
    img = str(fat)
    run("mmd", "-i", img, "::/EFI", "::/EFI/BOOT", "::/EFI/debian")
    placed = {
        "::/EFI/BOOT/BOOTX64.EFI": files["shim-signed"],
        "::/EFI/BOOT/grubx64.efi": files["grub-efi-amd64-signed"],
        # GRUB's prefix is /EFI/debian; the copy beside it covers a GRUB built without one
        "::/EFI/debian/grub.cfg": cfg,
        "::/EFI/BOOT/grub.cfg": cfg,
        "::/vmlinuz": kernel,
        "::/initrd.img": initrd,
    }
    for target, source in placed.items():
        run("mcopy", "-i", img, str(source), target)
    part = dest.with_suffix(".tmp")
    run("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", img, str(part))
    part.replace(dest)


def tampered(kernel: Path, tmp: Path) -> Path:
    """The kernel with one byte in the middle changed: same size, no longer matching its signature."""
    data = bytearray(kernel.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out = tmp / "vmlinuz-tampered"
    out.write_bytes(bytes(data))
    return out


def inputs_digest(out: Path) -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    for name in ("vmlinuz", "initrd.img", "cmdline"):
        h.update(hashlib.sha256((out / name).read_bytes()).digest())
    return h.hexdigest()


def build(out: Path) -> dict[str, str]:
    stamp = out / ".secureboot-stamp"
    digest = inputs_digest(out)
    fresh = stamp.exists() and json.loads(stamp.read_text()).get("digest") == digest
    if fresh and all((out / o).exists() for o in OUTPUTS):
        return {o: str(out / o) for o in OUTPUTS}
    ensure_tools()
    cmdline = (out / "cmdline").read_text().strip()
    with tempfile.TemporaryDirectory(prefix="novacron-sb-") as t:
        tmp = Path(t)
        files = fetch_boot_chain(out / "cache", tmp / "root")
        esp_disk(out / OUTPUTS[0], files, out / "vmlinuz", out / "initrd.img", cmdline, tmp)
        bad = tampered(out / "vmlinuz", tmp)
        esp_disk(out / OUTPUTS[1], files, bad, out / "initrd.img", cmdline, tmp)
    stamp.write_text(json.dumps({"digest": digest}))
    log(f"built Secure Boot disks in {out}")
    return {o: str(out / o) for o in OUTPUTS}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "out", help="guest/build.py's output directory")
    args = ap.parse_args()
    for k, v in build(args.out.resolve()).items():
        print(f"{k}={v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
