"""Choice of the QEMU accelerator: KVM only where the host really supports it, else TCG.

A nested, paravirtualized host can expose ``/dev/kvm`` that opens fine yet cannot run an
ordinary guest; the CPU flags (``vmx``/``svm``) tell the truth, and an optional probe
(a tiny QEMU run with ``accel=kvm``) confirms it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from novacron.virt.base import DriverError

ACCELERATORS = ("auto", "kvm", "tcg")


def cpu_flags(cpuinfo_text: str) -> frozenset[str]:
    """The flags of the first CPU in /proc/cpuinfo text."""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def read_cpuinfo(path: Path = Path("/proc/cpuinfo")) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def kvm_device_usable(dev: Path = Path("/dev/kvm")) -> bool:
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def kvm_probe(qemu_binary: str = "qemu-system-x86_64", timeout_s: float = 10.0) -> bool:
    """Start QEMU with accel=kvm and no guest for an instant; True when KVM initialised."""
    try:
        res = subprocess.run(
            [
                qemu_binary,
                "-machine",
                "none,accel=kvm",
                "-nodefaults",
                "-display",
                "none",
                "-S",
                "-qmp",
                "stdio",
            ],
            input='{"execute":"qmp_capabilities"}\n{"execute":"quit"}\n',
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0 and "failed to initialize kvm" not in res.stderr.lower()


def kvm_problems(
    cpuinfo_text: str,
    device_usable: bool,
    probe: Callable[[], bool] | None = None,
) -> list[str]:
    """Reasons KVM cannot be used here (empty when it can)."""
    problems = []
    flags = cpu_flags(cpuinfo_text)
    if not flags & {"vmx", "svm"}:
        problems.append(
            "the CPU flags in /proc/cpuinfo show neither vmx nor svm (no hardware virtualization)"
        )
    if not device_usable:
        problems.append("/dev/kvm is missing or cannot be opened read-write")
    if not problems and probe is not None and not probe():
        problems.append("a QEMU probe with accel=kvm failed")
    return problems


def choose_accelerator(
    setting: str = "auto",
    *,
    cpuinfo_text: str | None = None,
    device_usable: bool | None = None,
    probe: Callable[[], bool] | None = None,
) -> str:
    """Resolve an accelerator setting ("auto", "kvm", "tcg") to "kvm" or "tcg".

    Forcing "kvm" where it cannot work raises ``DriverError`` naming the reasons.
    The inputs default to the real host; tests pass fakes.
    """
    setting = (setting or "auto").strip().lower()
    if setting not in ACCELERATORS:
        raise DriverError(f"unknown accelerator {setting!r}; use one of {', '.join(ACCELERATORS)}")
    if setting == "tcg":
        return "tcg"
    text = read_cpuinfo() if cpuinfo_text is None else cpuinfo_text
    usable = kvm_device_usable() if device_usable is None else device_usable
    problems = kvm_problems(text, usable, probe)
    if not problems:
        return "kvm"
    if setting == "kvm":
        raise DriverError(
            "accelerator 'kvm' was requested but KVM cannot run guests on this host: "
            + "; ".join(problems)
            + ". Set the accelerator to 'auto' or 'tcg'."
        )
    return "tcg"
