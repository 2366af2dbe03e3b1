"""QEMU options for a VM NIC, by its port's ``vnic_type``, and the host traits each type needs.

``normal``: a tap device on the network's bridge with virtio-net (what runs here). ``direct``
(SR-IOV) hands the guest one of the host's virtual functions with vfio-pci; ``vhost-user`` (DPDK)
connects virtio-net to a vhost-user socket of the host's userspace switch, which needs the guest's
RAM in a shared memory backend. A host offers them when configured with its virtual functions
(``NOVACRON_SRIOV_VFS``) or its switch's socket directory (``NOVACRON_VHOST_USER_DIR``); its agent
then reports the trait, and the scheduler places such VMs only there. Neither SR-IOV NICs nor a
DPDK switch exist on these machines: for those two types only the generated configuration is
tested (tests/unit/test_nics.py), nothing boots with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from novacron.virt.base import DriverError, InstanceSpec, Nic

#: the host trait a vNIC type needs
VNIC_TRAITS = {"direct": "sriov", "vhost-user": "dpdk"}


def host_nic_traits(sriov_vfs: tuple[str, ...], vhost_user_dir: Path | None) -> tuple[str, ...]:
    """The traits a host reports for the NIC hardware it was configured with."""
    return tuple(t for t, offered in (("sriov", bool(sriov_vfs)), ("dpdk", vhost_user_dir)) if offered)


def vhost_user_socket(directory: Path, nic: Nic) -> Path:
    return directory / f"vhu{nic.port_id[:12]}.sock"


def assign_vfs(nics: Iterable[Nic], free: list[str]) -> list[Nic]:
    """``nics`` with a virtual function from ``free`` (in order) on each ``direct`` NIC lacking one."""
    out = []
    for nic in nics:
        if nic.vnic_type == "direct" and not nic.pci_address:
            if not free:
                raise DriverError(
                    f"port {nic.port_id}: no free SR-IOV virtual function on this host "
                    "(all of NOVACRON_SRIOV_VFS are given to other VMs); free one or place the VM elsewhere"
                )
            nic = Nic(**{**nic.__dict__, "pci_address": free.pop(0)})
        out.append(nic)
    return out


def nic_args(nic: Nic, index: int, vhost_user_dir: Path | None = None) -> list[str]:
    """``-netdev``/``-device`` (and ``-chardev``) arguments for NIC ``index`` of a VM."""
    nid = f"net{index}"
    if nic.vnic_type == "direct":
        if not nic.pci_address:
            raise DriverError(f"port {nic.port_id}: vnic_type direct needs a virtual function (pci_address)")
        return ["-device", f"vfio-pci,host={nic.pci_address},id={nid}-dev"]
    if nic.vnic_type == "vhost-user":
        if vhost_user_dir is None:
            raise DriverError(
                f"port {nic.port_id}: vnic_type vhost-user needs a DPDK switch on this host "
                "(NOVACRON_VHOST_USER_DIR is not set)"
            )
        # the switch owns the socket (server); QEMU reconnects if the switch restarts
        return [
            "-chardev",
            f"socket,id=chr{index},path={vhost_user_socket(vhost_user_dir, nic)},server=off,reconnect=1",
            "-netdev",
            f"vhost-user,id={nid},chardev=chr{index},vhostforce=on",
            "-device",
            f"virtio-net-pci,netdev={nid},id={nid}-dev,mac={nic.mac}",
        ]
    if nic.vnic_type != "normal":
        raise DriverError(f"port {nic.port_id}: unknown vnic_type {nic.vnic_type!r}")
    return [
        "-netdev",
        f"tap,id={nid},ifname={nic.device},script=no,downscript=no",
        "-device",
        f"virtio-net-pci,netdev={nid},id={nid}-dev,mac={nic.mac}",
    ]


def memory_args(nics: Iterable[Nic], memory_mb: int) -> list[str]:
    """vhost-user needs the guest RAM shareable with the switch: a shared memory backend as NUMA node 0."""
    if not any(n.vnic_type == "vhost-user" for n in nics):
        return []
    return [
        "-object",
        f"memory-backend-file,id=mem0,size={memory_mb}M,mem-path=/dev/hugepages,share=on",
        "-numa",
        "node,memdev=mem0",
    ]


def vm_nic_args(spec: InstanceSpec, tap: str | None, vhost_user_dir: Path | None) -> list[str]:
    """A VM's network devices: its tenant-network ports, else one NIC on the host's tap (or QEMU's
    user network), none for an isolated VM."""
    if spec.nics:
        # tenant-network ports: their taps are made (and firewalled) by the network backend
        argv = [arg for n, nic in enumerate(spec.nics) for arg in nic_args(nic, n, vhost_user_dir)]
        return argv + memory_args(spec.nics, max(16, spec.ram_mb))
    if spec.isolated:
        return []
    netdev = f"tap,id=net0,ifname={tap},script=no,downscript=no" if tap else "user,id=net0"
    return ["-netdev", netdev, "-device", f"virtio-net-pci,netdev=net0,id=net0-dev,mac={spec.mac}"]
