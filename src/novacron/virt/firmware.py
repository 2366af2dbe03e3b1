"""UEFI firmware for QEMU VMs: Debian's OVMF, with each VM's own NVRAM variable store.

OVMF comes as two flash images: the code (read-only, shared by every VM) and a template of the
variable store, which each VM gets a copy of (``nvram.fd``, beside its disk so that it lives on
shared storage when the disk does). QEMU maps both as ``pflash`` devices; the guest's firmware
writes its variables (boot entries, the boot counter ``MTC``, Secure Boot keys) into the copy,
which is never reset after it exists: a stop/start keeps it, a live migration carries it in
the migration stream (the flash contents are RAM to QEMU, written back to the destination's
file when it runs) and a cold move copies the file with the disk (``coldmove``).

Secure Boot uses OVMF's SMM build (``secboot``: only code in SMM may write the variables, so
the machine is ``q35`` with ``smm=on``) and a template with Microsoft's keys enrolled (``ms``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from novacron.private import write_private
from novacron.virt.base import DriverError, InstanceSpec

OVMF_DIR = Path("/usr/share/OVMF")
NVRAM_NAME = "nvram.fd"


@dataclass(frozen=True)
class Ovmf:
    """The two flash images of one OVMF build."""

    code: Path
    vars_template: Path


def ovmf(secure_boot: bool, base: Path = OVMF_DIR) -> Ovmf:
    """Debian's OVMF build for the VM (package ``ovmf``): fails with what to install."""
    if secure_boot:
        build = Ovmf(base / "OVMF_CODE_4M.secboot.fd", base / "OVMF_VARS_4M.ms.fd")
    else:
        build = Ovmf(base / "OVMF_CODE_4M.fd", base / "OVMF_VARS_4M.fd")
    for path in (build.code, build.vars_template):
        if not path.is_file():
            raise DriverError(
                f"UEFI firmware {path} is missing on this host: install Debian's 'ovmf' package"
            )
    return build


def ensure_nvram(spec: InstanceSpec, nvram: Path, base: Path = OVMF_DIR) -> None:
    """Give a UEFI VM its variable store from the template, once: an existing one is the VM's own."""
    if spec.firmware != "uefi" or nvram.exists():
        return
    template = ovmf(spec.secure_boot, base).vars_template
    tmp = nvram.with_name(f".{nvram.name}.part")
    write_private(tmp, template.read_bytes())  # the guest's variables may hold secrets: 0600
    tmp.replace(nvram)


def machine_args(spec: InstanceSpec, accelerator: str, nvram: Path, base: Path = OVMF_DIR) -> list[str]:
    """``-machine`` and, for UEFI, the two pflash drives (code read-only, the VM's variables)."""

    def opt(p: Path) -> str:  # a path inside a QEMU option string: commas are doubled
        return str(p).replace(",", ",,")

    machine = f"{spec.machine},accel={accelerator}"
    if spec.firmware != "uefi":
        return ["-machine", machine]
    build = ovmf(spec.secure_boot, base)
    argv = ["-machine", machine + (",smm=on" if spec.secure_boot else "")]
    if spec.secure_boot:
        # the variable flash answers writes only from SMM: the guest OS cannot forge the keys
        argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    return [
        *argv,
        "-drive",
        f"if=pflash,format=raw,unit=0,readonly=on,file={opt(build.code)}",
        "-drive",
        f"if=pflash,format=raw,unit=1,file={opt(nvram)}",
    ]


# ---- reading the variable store (diagnostics and tests) ---------------------------------------

#: an authenticated variable's header (edk2 AUTHENTICATED_VARIABLE_HEADER): StartId, State, pad,
#: Attributes, MonotonicCount, TimeStamp, PubKeyIndex, NameSize, DataSize, VendorGuid
_HEADER = struct.Struct("<HBBIQ16sIII16s")
_START_ID = 0x55AA
#: VAR_ADDED with no later transition: the live copy of a variable (older copies stay, marked deleted)
_VAR_ADDED = 0x3F


def variables(store: bytes) -> dict[str, bytes]:
    """The live variables in an OVMF variable store, by name (the newest copy of each)."""
    found: dict[str, bytes] = {}
    at = store.find(_START_ID.to_bytes(2, "little"))
    while 0 <= at <= len(store) - _HEADER.size:
        start, state, _, _, _, _, _, name_size, data_size, _ = _HEADER.unpack_from(store, at)
        end = at + _HEADER.size + name_size + data_size
        plausible = start == _START_ID and 0 < name_size <= 1024 and end <= len(store) and at % 4 == 0
        if not plausible:
            at = store.find(_START_ID.to_bytes(2, "little"), at + 1)
            continue
        if state == _VAR_ADDED:
            name = store[at + _HEADER.size : at + _HEADER.size + name_size].decode("utf-16-le", "replace")
            found[name.rstrip("\0")] = store[at + _HEADER.size + name_size : end]
        at = store.find(_START_ID.to_bytes(2, "little"), end + (-end % 4))
    return found


def boot_count(store: bytes) -> int:
    """OVMF's monotonic-counter variable ``MTC``: raised by one on every boot of the firmware."""
    mtc = variables(store).get("MTC")
    return int.from_bytes(mtc, "little") if mtc else 0
