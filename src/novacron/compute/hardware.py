"""The machine a VM runs as: machine type, firmware, Secure Boot and a virtual TPM.

Flavors and images may each set any of ``machine`` (``pc`` | ``q35``), ``firmware``
(``bios`` | ``uefi``), ``secure_boot`` and ``tpm``; a key left out is unset. A VM takes the
union of its flavor's and its image's settings when it is created (a key both set to different
values is refused: neither silently wins) and keeps that result for its life, so a later edit
of the image never changes the firmware a VM's NVRAM was made for. Unset keys take the
defaults, the machine every VM had before this existed: ``pc`` with SeaBIOS.
"""

from __future__ import annotations

from typing import Any

from novacron.errors import InvalidInput

MACHINES = ("pc", "q35")
FIRMWARES = ("bios", "uefi")
KEYS = ("machine", "firmware", "secure_boot", "tpm")
DEFAULTS: dict[str, Any] = {"machine": "pc", "firmware": "bios", "secure_boot": False, "tpm": False}
#: OVMF with a direct kernel boot faults (page fault in DXE) with 128 MiB; 256 MiB boots (measured)
UEFI_MIN_RAM_MB = 256


def _check_values(hw: dict[str, Any], field: str) -> None:
    for key in hw:
        if key not in KEYS:
            raise InvalidInput(f"{field}.{key}", f"unknown setting; known: {', '.join(KEYS)}")
    if "machine" in hw and hw["machine"] not in MACHINES:
        raise InvalidInput(f"{field}.machine", f"{hw['machine']!r} is not one of {', '.join(MACHINES)}")
    if "firmware" in hw and hw["firmware"] not in FIRMWARES:
        raise InvalidInput(f"{field}.firmware", f"{hw['firmware']!r} is not one of {', '.join(FIRMWARES)}")
    for key in ("secure_boot", "tpm"):
        if key in hw and not isinstance(hw[key], bool):
            raise InvalidInput(f"{field}.{key}", "true or false")


def _check_together(hw: dict[str, Any], field: str, complete: bool) -> None:
    """Secure Boot needs UEFI on q35 (OVMF's Secure Boot build keeps its variables in SMM,
    which only the q35 chipset has). On a flavor or image alone a key left unset may still come
    from the other one; on the VM's merged settings (``complete``) unset means the default."""
    if not hw.get("secure_boot"):
        return
    for key, need in (("firmware", "uefi"), ("machine", "q35")):
        have = hw.get(key, DEFAULTS[key] if complete else need)
        if have != need:
            raise InvalidInput(f"{field}.secure_boot", f"Secure Boot needs {key} {need!r}, not {have!r}")


def validated(hw: dict[str, Any] | None, field: str = "hardware") -> dict[str, Any]:
    """A flavor's or image's settings, checked: unset (None) keys dropped."""
    clean = {k: v for k, v in (hw or {}).items() if v is not None}
    _check_values(clean, field)
    _check_together(clean, field, complete=False)
    return clean


def for_vm(flavor_hw: dict[str, Any] | None, image_hw: dict[str, Any] | None, ram_mb: int) -> dict[str, Any]:
    """A new VM's complete settings from its flavor's and image's (a VM create's 422 names ``image``
    when the two disagree, and the setting; ``flavor`` when it has too little memory for UEFI)."""
    flavor_hw, image_hw = dict(flavor_hw or {}), dict(image_hw or {})
    for key in KEYS:
        if key in flavor_hw and key in image_hw and flavor_hw[key] != image_hw[key]:
            raise InvalidInput(
                "image",
                f"the image sets {key} {image_hw[key]!r} and the flavor {flavor_hw[key]!r}: "
                "choose a flavor that agrees with the image or leaves it unset",
            )
    hw = {**DEFAULTS, **flavor_hw, **image_hw}
    _check_values(hw, "image")
    _check_together(hw, "image", complete=True)
    if hw["firmware"] == "uefi" and ram_mb < UEFI_MIN_RAM_MB:
        raise InvalidInput(
            "flavor", f"UEFI firmware needs at least {UEFI_MIN_RAM_MB} MiB of memory, not {ram_mb}"
        )
    return hw


def of_vm(stored: dict[str, Any] | None) -> dict[str, Any]:
    """A VM's complete settings (a VM made before they existed: the defaults)."""
    return {**DEFAULTS, **(stored or {})}
