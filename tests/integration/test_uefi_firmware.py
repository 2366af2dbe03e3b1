"""UEFI on q35 with real QEMU and Debian's OVMF: a VM's NVRAM is its own and moves with it
(stop/start, live migration, cold migration), and so does its virtual TPM's state.

The test guest's kernel (Debian's bzImage, started by OVMF through its EFI stub) reports from
inside that it was booted by UEFI. OVMF raises its monotonic counter variable ``MTC`` on every
boot: read from the VM's ``nvram.fd`` it counts the boots that variable store has seen, so it
tells a kept store (1, 2, 3 ...) from one reset to the template (always 1).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from novacron.virt import firmware
from tests.conftest import Guest, Server, default_project, require, wait_console, wait_task
from tests.integration.test_remote_agent import Agent, _wait_host, host_project

#: the guest says from inside how it was booted (sysfs has ``firmware/efi`` only under UEFI)
SAYS_FIRMWARE = (
    "#!/bin/sh\n"
    'if [ -d /sys/firmware/efi ]; then echo "booted-by-uefi-$(cat /sys/firmware/efi/fw_platform_size)"; '
    "else echo booted-by-bios; fi\n"
    '[ -e /sys/class/tpm/tpm0 ] && echo "has-tpm-$(cat /sys/class/tpm/tpm0/tpm_version_major)"\n'
)
UEFI_Q35 = {"machine": "q35", "firmware": "uefi", "tpm": True}
SECURE_BOOT = {"machine": "q35", "firmware": "uefi", "secure_boot": True}
#: the kernel says so when the firmware booted it with Secure Boot on (and locks itself down)
SAYS_SECURE_BOOT = "#!/bin/sh\ndmesg | grep -q 'secureboot: Secure boot enabled' && echo secure-boot-on\n"


def _import_uefi_image(c: httpx.Client, guest: Guest) -> None:
    require(guest.efi_kernel is not None and guest.efi_kernel.exists(), "guest/build.py made no vmlinuz")
    assert guest.efi_kernel is not None
    r = c.post(
        "/v1/images",
        json={
            "name": "uefi-guest",
            "public": True,
            "kernel_cmdline": guest.cmdline,
            "project_id": default_project(c),
            "hardware": UEFI_Q35,
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["hardware"] == UEFI_Q35
    for part, path in (("kernel", guest.efi_kernel), ("initrd", guest.initrd), ("file", guest.disk)):
        r = c.put(
            f"/v1/images/{r.json()['id']}/{part}",
            content=path.read_bytes(),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 200, r.text


def _import_disk_image(c: httpx.Client, name: str, hardware: dict[str, Any], disk: Path) -> None:
    r = c.post("/v1/images", json={"name": name, "project_id": default_project(c), "hardware": hardware})
    assert r.status_code == 201, r.text
    r = c.put(
        f"/v1/images/{r.json()['id']}/file",
        content=disk.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text


def _secure_boot_disks(guest: Guest) -> tuple[Path, Path]:
    """The boot disks of guest/secureboot.py: Debian's signed chain, and the same with a tampered kernel."""
    out = guest.initrd.parent
    if not (out / "secureboot.qcow2").exists():
        script = Path(__file__).resolve().parents[2] / "guest" / "secureboot.py"
        subprocess.run([sys.executable, str(script), "--out", str(out)], check=True)
    return out / "secureboot.qcow2", out / "secureboot-tampered.qcow2"


def _check_secure_boot(c: httpx.Client, guest: Guest) -> None:
    """A Secure Boot VM boots Debian's signed shim -> GRUB -> kernel chain from its disk, and the
    firmware's chain refuses the same disk with one byte of the kernel changed."""
    signed, tampered = _secure_boot_disks(guest)
    vms = {}
    for name, disk in (("sb-signed", signed), ("sb-tampered", tampered)):
        _import_disk_image(c, name, SECURE_BOOT, disk)
        r = c.post(
            "/v1/vms",
            json={
                "name": name,
                "image": name,
                "flavor": "small",
                "user_data": SAYS_SECURE_BOOT,
                "project_id": host_project(c),
            },
        )
        assert r.status_code == 202, r.text
        assert r.json()["vm"]["hardware"]["secure_boot"] is True
        assert wait_task(c, r.json()["task_id"], timeout_s=120)["state"] == "succeeded"
        vms[name] = r.json()["vm"]["id"]
    wait_console(c, vms["sb-signed"], "secure-boot-on", timeout_s=120)
    refused = wait_console(c, vms["sb-tampered"], "bad shim signature", timeout_s=120)
    assert "NOVACRON-GUEST-UP" not in refused, "a kernel that fails its signature booted"
    for vm_id in vms.values():
        r = c.delete(f"/v1/vms/{vm_id}")
        assert r.status_code == 202 and wait_task(c, r.json()["task_id"])["state"] == "succeeded", r.text


def _problem_field(r: httpx.Response) -> str:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    return " ".join(str(e.get("field") or e.get("loc") or e) for e in r.json().get("errors", [r.json()]))


def _check_validation(c: httpx.Client) -> None:
    """Settings that cannot work are refused, naming the field."""
    bad: list[tuple[dict[str, Any], str]] = [
        ({"machine": "isapc"}, "machine"),
        ({"firmware": "bios", "secure_boot": True}, "secure_boot"),
        ({"machine": "pc", "secure_boot": True}, "secure_boot"),
        ({"tpm": 3}, "tpm"),
    ]
    for n, (hw, field) in enumerate(bad):
        r = c.post("/v1/images", json={"name": f"bad-{n}", "project_id": default_project(c), "hardware": hw})
        assert field in _problem_field(r), r.text
    r = c.post(
        "/v1/flavors",
        json={"name": "bios-only", "vcpus": 1, "ram_mb": 128, "disk_gb": 1, "hardware": {"firmware": "bios"}},
    )
    assert r.status_code == 201, r.text
    r = c.post(
        "/v1/vms",
        json={
            "name": "mismatch",
            "image": "uefi-guest",
            "flavor": "bios-only",
            "project_id": host_project(c),
        },
    )
    assert "image" in _problem_field(r) and "firmware" in r.text, r.text
    r = c.post(
        "/v1/vms",
        json={"name": "too-small", "image": "uefi-guest", "flavor": "tiny", "project_id": host_project(c)},
    )
    assert "flavor" in _problem_field(r) and "256 MiB" in r.text, r.text


def _instance_dir(server: Server, agent: Agent, host_name: str, vm_id: str) -> Path:
    base = agent.state_dir if host_name == "node-b" else server.state_dir
    return base / "instances" / vm_id


def _swtpms(instance_dir: Path) -> int:
    """The swtpm processes serving the VM's TPM state in ``instance_dir``."""
    out = subprocess.run(["pgrep", "-f", f"swtpm.*dir={instance_dir}/tpm"], capture_output=True, text=True)
    return len(out.stdout.split())


def _boots(nvram: Path) -> int:
    return firmware.boot_count(nvram.read_bytes())


def _act(c: httpx.Client, vm_id: str, action: str) -> None:
    r = c.post(f"/v1/vms/{vm_id}/actions/{action}")
    assert r.status_code == 202, r.text
    assert wait_task(c, r.json()["task_id"], timeout_s=120)["state"] == "succeeded"


def _wait_said(c: httpx.Client, vm_id: str, times: int) -> None:
    """Until the guest said it booted by UEFI ``times`` times on this host's console log."""
    deadline = time.monotonic() + 90
    text = ""
    while text.count("booted-by-uefi-64") < times:
        assert time.monotonic() < deadline, text[-1500:]
        time.sleep(0.3)
        text = c.get(f"/v1/vms/{vm_id}/console-log").text


def _restart_and_wait(c: httpx.Client, vm_id: str, nvram: Path, boots: int, said: int) -> None:
    """Stop (the store stays byte for byte), start: the guest boots by UEFI and the count goes on."""
    _act(c, vm_id, "stop")
    assert _boots(nvram) == boots and _swtpms(nvram.parent) == 0, "swtpm outlived its VM"
    kept = firmware.variables(nvram.read_bytes())
    _act(c, vm_id, "start")
    _wait_said(c, vm_id, said + 1)
    now = firmware.variables(nvram.read_bytes())
    assert firmware.boot_count(nvram.read_bytes()) == boots + 1, "the VM's NVRAM was reset instead of kept"
    assert now["BootOrder"] == kept["BootOrder"] and now["Boot0000"] == kept["Boot0000"]


def test_uefi_vm_keeps_its_nvram_across_restart_and_migration_and_secure_boot_is_enforced(
    two_hosts: tuple[Server, Agent], guest: Guest
) -> None:
    server, agent = two_hosts
    require(firmware.OVMF_DIR.joinpath("OVMF_CODE_4M.fd").exists(), "Debian's ovmf package is not installed")
    with server.client() as c:
        token = c.post("/v1/hosts/join-tokens", json={}).json()
        agent.start(token["join_token"], token["ca_fingerprint"])
        _import_uefi_image(c, guest)
        _check_validation(c)
        _wait_host(c, "node-b")
        hosts = {h["id"]: h["name"] for h in c.get("/v1/hosts").json()["items"]}

        r = c.post(
            "/v1/vms",
            json={
                "name": "uefi-vm",
                "image": "uefi-guest",
                "flavor": "small",
                "user_data": SAYS_FIRMWARE,
                "project_id": host_project(c),
            },
        )
        assert r.status_code == 202, r.text
        vm_id = r.json()["vm"]["id"]
        assert r.json()["vm"]["hardware"] == {**UEFI_Q35, "secure_boot": False}
        assert wait_task(c, r.json()["task_id"], timeout_s=120)["state"] == "succeeded"
        _wait_said(c, vm_id, 1)
        source = c.get(f"/v1/vms/{vm_id}").json()["host_id"]
        nvram = _instance_dir(server, agent, hosts[source], vm_id) / "nvram.fd"
        template = (firmware.OVMF_DIR / "OVMF_VARS_4M.fd").read_bytes()
        assert nvram.stat().st_mode & 0o077 == 0 and nvram.read_bytes() != template
        assert _boots(nvram) == 1 and "BootOrder" in firmware.variables(nvram.read_bytes())
        # its TPM 2.0 (swtpm), seen by the guest, its state kept with the VM
        wait_console(c, vm_id, "has-tpm-2", timeout_s=30)
        assert (nvram.parent / "tpm" / "tpm2-00.permall").stat().st_size > 0
        assert _swtpms(nvram.parent) == 1

        _restart_and_wait(c, vm_id, nvram, boots=1, said=1)

        # live: the flash contents travel in QEMU's migration stream and land in the new host's file
        on_source = nvram.read_bytes()
        r = c.post(f"/v1/vms/{vm_id}/migrate", json={})
        assert r.status_code == 202, r.text
        task = wait_task(c, r.json()["task_id"], timeout_s=180)
        assert task["state"] == "succeeded", task["error"]
        target = c.get(f"/v1/vms/{vm_id}").json()["host_id"]
        assert target != source
        moved = _instance_dir(server, agent, hosts[target], vm_id) / "nvram.fd"
        after = moved.read_bytes()
        assert (_boots(moved), len(after)) == (2, len(on_source))
        assert firmware.variables(after) == firmware.variables(on_source), "the new host's NVRAM differs"
        # the TPM's state came in QEMU's stream to the new host's own swtpm
        assert _swtpms(moved.parent) == 1 and (moved.parent / "tpm" / "tpm2-00.permall").stat().st_size > 0
        assert hashlib.sha256(after).digest() == hashlib.sha256(on_source).digest()

        # cold, back home: the stopped VM's store follows its disk byte for byte, and boots on
        _act(c, vm_id, "stop")
        stopped = moved.read_bytes()
        stopped_tpm = (moved.parent / "tpm" / "tpm2-00.permall").read_bytes()
        assert firmware.boot_count(stopped) == 2
        r = c.post(f"/v1/vms/{vm_id}/migrate", json={"host": source})
        assert r.status_code == 202, r.text
        task = wait_task(c, r.json()["task_id"], timeout_s=180)
        assert task["state"] == "succeeded" and task["kind"] == "vm.cold_migrate", task
        home = _instance_dir(server, agent, hosts[source], vm_id) / "nvram.fd"
        assert hashlib.sha256(home.read_bytes()).digest() == hashlib.sha256(stopped).digest()
        assert home.stat().st_mode & 0o077 == 0
        assert (home.parent / "tpm" / "tpm2-00.permall").read_bytes() == stopped_tpm, (
            "the TPM state stayed behind"
        )
        _act(c, vm_id, "start")
        _wait_said(c, vm_id, 1)
        assert _boots(home) == 3, "the firmware did not boot from the store that came back"
        wait_console(c, vm_id, "has-tpm-2", timeout_s=30)

        # Secure Boot, on the same node: the first VM gone so the two new ones have the cores
        r = c.delete(f"/v1/vms/{vm_id}")
        assert r.status_code == 202 and wait_task(c, r.json()["task_id"])["state"] == "succeeded", r.text
        _check_secure_boot(c, guest)
