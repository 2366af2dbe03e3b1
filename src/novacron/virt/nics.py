"""QEMU options for a VM NIC, by the port's ``vnic_type``.

``normal``: a tap device on the network's bridge with virtio-net (what runs here). ``direct``
(SR-IOV) hands the guest the port's virtual function with vfio-pci; ``vhost-user`` (DPDK) connects
virtio-net to a vhost-user socket of the host's userspace switch, which needs the guest's RAM in a
shared memory backend. Neither SR-IOV NICs nor a DPDK switch exist on these machines: for those two
types only the generated configuration is tested (tests/unit/test_nics.py), nothing boots with it.
"""

from __future__ import annotations

from pathlib import Path

from novacron.network.model import PortSpec

VHOST_USER_DIR = Path("/run/novacron/vhost-user")


def vhost_user_socket(port: PortSpec) -> Path:
    return VHOST_USER_DIR / f"vhu{port.id[:12]}.sock"


def nic_args(port: PortSpec, index: int = 0) -> list[str]:
    """``-netdev``/``-device`` (and ``-chardev``) arguments for NIC ``index`` of a VM."""
    nid = f"net{index}"
    if port.vnic_type == "direct":
        if not port.pci_address:
            raise ValueError(f"port {port.id}: vnic_type direct needs a pci_address (its virtual function)")
        return ["-device", f"vfio-pci,host={port.pci_address},id={nid}-dev"]
    if port.vnic_type == "vhost-user":
        # the switch owns the socket (server); QEMU reconnects if the switch restarts
        return [
            "-chardev",
            f"socket,id=chr{index},path={vhost_user_socket(port)},server=off,reconnect=1",
            "-netdev",
            f"vhost-user,id={nid},chardev=chr{index},vhostforce=on",
            "-device",
            f"virtio-net-pci,netdev={nid},id={nid}-dev,mac={port.mac}",
        ]
    return [
        "-netdev",
        f"tap,id={nid},ifname={port.device},script=no,downscript=no",
        "-device",
        f"virtio-net-pci,netdev={nid},id={nid}-dev,mac={port.mac}",
    ]


def memory_args(ports: list[PortSpec], memory_mb: int) -> list[str]:
    """vhost-user needs the guest RAM shareable with the switch: a shared memory backend as NUMA node 0."""
    if not any(p.vnic_type == "vhost-user" for p in ports):
        return []
    return [
        "-object",
        f"memory-backend-file,id=mem0,size={memory_mb}M,mem-path=/dev/hugepages,share=on",
        "-numa",
        "node,memdev=mem0",
    ]


def host_traits(ports: list[PortSpec]) -> set[str]:
    """The host traits the scheduler must find on a host for these ports."""
    traits = set()
    for p in ports:
        if p.vnic_type == "direct":
            traits.add("HW_NIC_SRIOV")
        elif p.vnic_type == "vhost-user":
            traits.add("HW_NIC_DPDK")
    return traits
