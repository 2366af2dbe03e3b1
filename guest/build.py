#!/usr/bin/env python3
"""Build the NovaCron test guest from Debian packages alone.

Outputs (in guest/out/):
  vmlinux      uncompressed kernel (xz stream of Debian's vmlinuz), boots via PVH
  vmlinuz      Debian's bzImage as shipped (EFI stub): what UEFI (OVMF) boots with ``-kernel``
  initrd.img   busybox initramfs (gzip cpio newc) whose /init reads the NoCloud seed
  disk.qcow2   a small empty data disk (64 MiB, qcow2) usable as an image
  cmdline      the kernel command line

Idempotent: when the outputs exist and the inputs (this file, guest/init, the
kernel package version) are unchanged, it returns in milliseconds.
Run as root on Debian 12: ``python3 guest/build.py [--out DIR] [--force]``.
Only the standard library is used, so it runs before any virtualenv exists.
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: tty0 (the VGA screen) first, ttyS0 last: the last console= is /dev/console, which the serial
#: tests and the guest's shell use; the kernel still prints its messages on both
CMDLINE = "console=tty0 console=ttyS0 quiet panic=-1"
DISK_SIZE = "64M"
OS_RELEASE = 'NAME="NovaCron test guest"\nPRETTY_NAME="NovaCron test guest (busybox)"\nID=novacron-guest\nVERSION_ID=1\n'
#: modules the guest loads, by name; their dependencies are added automatically.
#: virtio_balloon reports the guest's own memory figures (QMP ``guest-stats``) for monitoring
WANTED_MODULES = [
    "virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "virtio_balloon", "crc32c_generic", "ext4", "isofs",
    "button", "evdev", "pvpanic_mmio",
    # bochs-drm drives QEMU's std VGA: fbcon then draws the kernel console on the graphical console
    "bochs",
]
#: apt package -> a command it provides
APT_NEEDS = {
    "qemu-utils": "qemu-img",
    "busybox-static": None,
    "cpio": "cpio",
    "xz-utils": "xz",
    "iperf3": "iperf3",
    "qemu-guest-agent": "qemu-ga",
}
#: dynamically linked programs copied into the guest with their libraries, started by user-data
#: when a test wants them, as a tenant would: iperf3 measures bandwidth from inside a guest (QoS),
#: qemu-ga freezes the guest's filesystems for application-consistent backups
GUEST_PROGRAMS = ["/usr/bin/iperf3", "/usr/sbin/qemu-ga"]


def log(msg: str) -> None:
    print(f"[guest/build] {msg}", file=sys.stderr, flush=True)


def run(*cmd: str, cwd: Path | None = None) -> str:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"command failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr.strip()}")
    return res.stdout


def pkg_installed(pkg: str) -> bool:
    res = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return res.returncode == 0 and "install ok installed" in res.stdout


def ensure_packages() -> None:
    missing = [p for p in APT_NEEDS if not pkg_installed(p)]
    if not missing:
        return
    log(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    res = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env)
    if res.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing], env=env, check=True)


def kernel_package() -> str:
    """The real package behind the linux-image-amd64 metapackage, e.g. linux-image-6.1.0-56-amd64."""
    pattern = r"Depends:\s*(linux-image-[0-9][^\s]*-amd64)\b"
    res = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True)
    if not re.search(pattern, res.stdout):  # fresh system without package lists
        log("apt-get update")
        subprocess.run(["apt-get", "update"], check=False, capture_output=True)
    out = run("apt-cache", "depends", "linux-image-amd64")
    m = re.search(pattern, out)
    if not m:
        raise SystemExit(f"cannot resolve linux-image-amd64 to a kernel package:\n{out}")
    return m.group(1)


def fetch_kernel(cache: Path, pkg: str) -> Path:
    """The kernel .deb, downloaded once into ``cache`` (70 MB; the unpacked tree is 400 MB)."""
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{pkg}_*.deb"))
    if debs:
        return debs[-1]
    for old in cache.glob("*.deb"):  # a previous kernel version
        old.unlink()
    log(f"downloading {pkg}")
    # apt-get download as root warns about the _apt sandbox; harmless.
    run("apt-get", "download", pkg, cwd=cache)
    debs = sorted(cache.glob(f"{pkg}_*.deb"))
    if not debs:
        raise SystemExit(f"apt-get download {pkg} produced no .deb")
    return debs[-1]


def extract_vmlinux(vmlinuz: Path, dest: Path) -> None:
    """Find the xz stream inside the bzImage and decompress it into an ELF vmlinux."""
    data = vmlinuz.read_bytes()
    magic = b"\xfd7zXZ\x00"
    pos = data.find(magic)
    while pos != -1:
        try:
            dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
            out = dec.decompress(data[pos:])
        except lzma.LZMAError:
            out = b""
        if out[:4] == b"\x7fELF":
            tmp = dest.with_suffix(".tmp")
            tmp.write_bytes(out)
            tmp.replace(dest)
            return
        pos = data.find(magic, pos + 1)
    raise SystemExit(f"no xz-compressed ELF found in {vmlinuz}")


def modinfo_depends(ko: Path) -> list[str]:
    m = re.search(rb"depends=([^\x00]*)\x00", ko.read_bytes())
    if not m or not m.group(1):
        return []
    return [d.decode() for d in m.group(1).split(b",") if d]


def module_order(moddir: Path, wanted: list[str]) -> list[Path]:
    """Module files for ``wanted`` plus dependencies, in load order (deps first)."""
    index: dict[str, Path] = {}
    for ko in moddir.rglob("*.ko"):
        index[ko.stem.replace("-", "_")] = ko
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        key = name.replace("-", "_")
        if key in seen:
            return
        seen.add(key)
        ko = index.get(key)
        if ko is None:
            bfile = moddir / "modules.builtin"
            builtin = bfile.read_text() if bfile.exists() else ""
            if f"/{name}.ko" in builtin or f"/{key}.ko" in builtin:
                return
            raise SystemExit(f"kernel module {name} not found in {moddir}")
        for dep in modinfo_depends(ko):
            visit(dep)
        order.append(ko)

    for w in wanted:
        visit(w)
    return order


def cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive of (path, mode, data); symlinks carry the target as data.

    Character devices (only /dev/console here) carry b"major:minor" as data.
    """
    buf = io.BytesIO()
    ino = 1
    for path, mode, data in [*entries, ("TRAILER!!!", 0, b"")]:
        name = path.encode() + b"\x00"
        nlink = 2 if (mode & 0o170000) == 0o040000 else 1
        rmaj = rmin = 0
        if (mode & 0o170000) == 0o020000:
            rmaj, rmin = (int(x) for x in data.split(b":"))
            data = b""
        hdr = "070701" + "".join(
            f"{v:08x}"
            for v in (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rmaj, rmin, len(name), 0)
        )
        buf.write(hdr.encode() + name)
        buf.write(b"\x00" * ((4 - (110 + len(name)) % 4) % 4))
        buf.write(data)
        buf.write(b"\x00" * ((4 - len(data) % 4) % 4))
        ino += 1
    return buf.getvalue()


def shared_libraries(program: str) -> list[Path]:
    """The shared objects ``program`` loads (the dynamic loader included), by ldd."""
    libs = []
    for line in run("ldd", program).splitlines():
        path = line.split("=>")[-1].split("(")[0].strip()
        if path.startswith("/"):
            libs.append(Path(path))
    return libs


def program_entries(programs: list[str]) -> list[tuple[str, int, bytes]]:
    files = {Path(p) for p in programs}
    for program in programs:
        files.update(shared_libraries(program))
    dirs = sorted({str(parent.relative_to("/")) for f in files for parent in f.parents if str(parent) != "/"})
    entries = [(d, 0o040755, b"") for d in dirs]
    # contents through symlinks (libfoo.so.1 -> libfoo.so.1.2): the guest needs only the names
    return entries + [(str(f.relative_to("/")), 0o100755, f.resolve().read_bytes()) for f in sorted(files)]


def build_initrd(kroot: Path, kver: str, dest: Path) -> None:
    moddir = kroot / "lib" / "modules" / kver
    mods = module_order(moddir, WANTED_MODULES)
    d, f, ln = 0o040755, 0o100755, 0o120777
    entries: list[tuple[str, int, bytes]] = []
    for dirname in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "dev", "proc", "sys", "tmp",
                    "run", "etc", "mnt", "mnt/seed", "root", "lib", "lib/modules"):
        entries.append((dirname, d, b""))
    # the kernel opens /dev/console for init before /init can mount devtmpfs
    entries.append(("dev/console", 0o020600, b"5:1"))
    entries.append(("bin/busybox", f, Path("/bin/busybox").read_bytes()))
    entries.append(("bin/sh", ln, b"busybox"))
    entries.append(("init", f, (HERE / "init").read_bytes()))
    entries.append(("etc/passwd", 0o100644, b"root:x:0:0:root:/root:/bin/sh\n"))
    entries.append(("etc/group", 0o100644, b"root:x:0:\n"))
    # what qemu-guest-agent's guest-get-osinfo reads
    entries.append(("etc/os-release", 0o100644, OS_RELEASE.encode()))
    entries.append(("etc/profile", 0o100644, b'export PATH=/sbin:/bin:/usr/sbin:/usr/bin\nPS1="\\h# "\n'))
    have = {e[0] for e in entries}
    entries += [e for e in program_entries(GUEST_PROGRAMS) if e[0] not in have]
    names = []
    for ko in mods:
        entries.append((f"lib/modules/{ko.name}", 0o100644, ko.read_bytes()))
        names.append(ko.name)
    entries.append(("lib/modules/load-order", 0o100644, ("\n".join(names) + "\n").encode()))
    tmp = dest.with_suffix(".tmp")
    with open(tmp, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", compresslevel=6, mtime=0) as gz:
        gz.write(cpio_newc(entries))
    tmp.replace(dest)
    log(f"initrd: {len(mods)} modules ({', '.join(n[:-3] for n in names)})")


def inputs_digest(pkg: str) -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update((HERE / "init").read_bytes())
    h.update(pkg.encode())
    h.update(CMDLINE.encode())
    for program in [Path("/bin/busybox"), *map(Path, GUEST_PROGRAMS)]:
        if program.exists():
            st = program.stat()
            h.update(f"{program}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


OUTPUTS = ("vmlinux", "vmlinuz", "initrd.img", "disk.qcow2", "cmdline")


def build(out: Path, force: bool = False) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent callers wait, then take the fast path
        return _build(out, force)


def _build(out: Path, force: bool) -> dict[str, str]:
    stamp = out / ".stamp"
    have_all = all((out / o).exists() for o in OUTPUTS)
    if have_all and not force and stamp.exists():
        # fast path: no apt calls at all when nothing changed
        prev = json.loads(stamp.read_text())
        if prev.get("digest") == inputs_digest(prev.get("kernel_package", "")):
            return {o: str(out / o) for o in OUTPUTS}
    ensure_packages()
    pkg = kernel_package()
    digest = inputs_digest(pkg)
    deb = fetch_kernel(out / "cache", pkg)
    kver = pkg.removeprefix("linux-image-")
    with tempfile.TemporaryDirectory(prefix="novacron-guest-") as tmp:
        kroot = Path(tmp)
        run("dpkg-deb", "-x", str(deb), str(kroot))
        prev_pkg = json.loads(stamp.read_text()).get("kernel_package") if stamp.exists() else None
        if force or not (out / "vmlinux").exists() or prev_pkg != pkg:
            extract_vmlinux(kroot / "boot" / f"vmlinuz-{kver}", out / "vmlinux")
        if force or not (out / "vmlinuz").exists() or prev_pkg != pkg:
            # the bzImage itself: its EFI stub is what OVMF starts (the PVH vmlinux is no EFI binary)
            tmp_z = out / "vmlinuz.tmp"
            tmp_z.write_bytes((kroot / "boot" / f"vmlinuz-{kver}").read_bytes())
            tmp_z.replace(out / "vmlinuz")
        build_initrd(kroot, kver, out / "initrd.img")
    if not (out / "disk.qcow2").exists():
        tmp = out / "disk.tmp.qcow2"
        run("qemu-img", "create", "-q", "-f", "qcow2", str(tmp), DISK_SIZE)
        tmp.replace(out / "disk.qcow2")
    (out / "cmdline").write_text(CMDLINE + "\n")
    stamp.write_text(json.dumps({"digest": digest, "kernel_package": pkg}))
    log(f"built guest from {pkg} in {out}")
    return {o: str(out / o) for o in OUTPUTS}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--force", action="store_true", help="rebuild even when outputs are up to date")
    args = ap.parse_args()
    if os.geteuid() != 0 and not all((args.out / o).exists() for o in OUTPUTS):
        log("warning: not root; apt-get may fail")
    paths = build(args.out.resolve(), force=args.force)
    for k, v in paths.items():
        print(f"{k}={v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
