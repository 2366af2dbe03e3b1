"""Accelerator choice: KVM only with vmx/svm flags, a usable /dev/kvm and a passing probe."""

from __future__ import annotations

import pytest

from novacron.virt.accel import choose_accelerator, cpu_flags, kvm_problems
from novacron.virt.base import DriverError

INTEL = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic vmx sse2 avx2
processor\t: 1
flags\t\t: fpu vme
"""
AMD = "processor : 0\nflags : fpu sse2 svm npt\n"
NESTED = "processor : 0\nflags : fpu sse2 hypervisor avx2\n"


def test_cpu_flags_of_first_cpu() -> None:
    assert "vmx" in cpu_flags(INTEL) and "avx2" in cpu_flags(INTEL)
    assert "svm" in cpu_flags(AMD)
    assert cpu_flags("") == frozenset()


@pytest.mark.parametrize("text", [INTEL, AMD])
def test_auto_picks_kvm_when_everything_works(text: str) -> None:
    assert choose_accelerator("auto", cpuinfo_text=text, device_usable=True, probe=lambda: True) == "kvm"
    assert choose_accelerator("kvm", cpuinfo_text=text, device_usable=True) == "kvm"


def test_auto_falls_back_to_tcg() -> None:
    # no vmx/svm: /dev/kvm opening is not enough (a paravirtualized host)
    assert choose_accelerator("auto", cpuinfo_text=NESTED, device_usable=True) == "tcg"
    # flags but no usable device
    assert choose_accelerator("auto", cpuinfo_text=INTEL, device_usable=False) == "tcg"
    # flags and device, but the probe fails
    assert choose_accelerator("auto", cpuinfo_text=INTEL, device_usable=True, probe=lambda: False) == "tcg"


def test_forced_kvm_that_cannot_work_raises_clearly() -> None:
    with pytest.raises(DriverError, match="neither vmx nor svm"):
        choose_accelerator("kvm", cpuinfo_text=NESTED, device_usable=True)
    with pytest.raises(DriverError, match="/dev/kvm"):
        choose_accelerator("kvm", cpuinfo_text=AMD, device_usable=False)


def test_tcg_is_always_possible_and_unknown_values_rejected() -> None:
    assert choose_accelerator("tcg", cpuinfo_text=INTEL, device_usable=True) == "tcg"
    assert choose_accelerator("TCG") == "tcg"
    with pytest.raises(DriverError, match="unknown accelerator"):
        choose_accelerator("hvf")


def test_problems_list_every_reason() -> None:
    assert len(kvm_problems(NESTED, False)) == 2
    assert kvm_problems(INTEL, True) == []


def test_this_host_resolves() -> None:
    assert choose_accelerator("auto") in ("kvm", "tcg")
