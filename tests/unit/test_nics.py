"""The QEMU options of SR-IOV (direct) and DPDK (vhost-user) ports: generated configuration only,
since neither an SR-IOV NIC nor a DPDK switch exists on these machines."""

from __future__ import annotations

import pytest

from novacron.network.model import FixedIP, PortSpec
from novacron.virt.nics import host_traits, memory_args, nic_args, vhost_user_socket


def port(vnic_type: str, pci: str | None = None) -> PortSpec:
    return PortSpec(
        id="p-0123456789abcdef",
        network_id="n",
        tenant_id="t",
        mac="52:54:00:12:34:56",
        fixed_ips=(FixedIP("s", "10.0.0.5"),),
        device="tap0123",
        vnic_type=vnic_type,  # type: ignore[arg-type]
        pci_address=pci,
    )


def test_normal_port_is_a_tap_with_virtio_net() -> None:
    assert nic_args(port("normal"), 1) == [
        "-netdev", "tap,id=net1,ifname=tap0123,script=no,downscript=no",
        "-device", "virtio-net-pci,netdev=net1,id=net1-dev,mac=52:54:00:12:34:56",
    ]  # fmt: skip
    assert memory_args([port("normal")], 512) == [] and host_traits([port("normal")]) == set()


def test_direct_port_passes_its_virtual_function_through_vfio() -> None:
    p = port("direct", "0000:3b:02.1")
    assert nic_args(p) == ["-device", "vfio-pci,host=0000:3b:02.1,id=net0-dev"]
    assert host_traits([p]) == {"HW_NIC_SRIOV"}
    with pytest.raises(ValueError, match="pci_address"):
        nic_args(port("direct"))


def test_vhost_user_port_needs_a_socket_and_shared_guest_memory() -> None:
    p = port("vhost-user")
    args = nic_args(p)
    sock = str(vhost_user_socket(p))
    assert args[args.index("-chardev") + 1] == f"socket,id=chr0,path={sock},server=off,reconnect=1"
    assert args[args.index("-netdev") + 1] == "vhost-user,id=net0,chardev=chr0,vhostforce=on"
    assert args[args.index("-device") + 1] == "virtio-net-pci,netdev=net0,id=net0-dev,mac=52:54:00:12:34:56"
    mem = memory_args([port("normal"), p], 1024)
    assert "memory-backend-file,id=mem0,size=1024M,mem-path=/dev/hugepages,share=on" in mem
    assert mem[mem.index("-numa") + 1] == "node,memdev=mem0"
    assert host_traits([p, port("normal")]) == {"HW_NIC_DPDK"}
