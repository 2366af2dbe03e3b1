"""Host side of a VM NIC: a persistent tap device enslaved to a Linux bridge (pyroute2)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from novacron.virt.base import DriverError


def tap_name(instance_id: str, salt: str = "") -> str:
    """The tap device of an instance: ``nc`` + 8 hex of sha256(salt + id) (<= 15 chars, stable).

    Hosts that share one kernel (several agents on one machine, as in tests) pass different
    salts, so the source and destination of a migration never want the same device.
    """
    return "nc" + hashlib.sha256((salt + instance_id).encode()).hexdigest()[:8]


def sys_has(name: str) -> bool:
    """Whether /sys shows device ``name`` (it shows the namespace it was mounted in)."""
    return Path("/sys/class/net", name).exists()


def link_exists(name: str) -> bool:
    """Asked over netlink: /sys shows the namespace it was mounted in, not the caller's.

    Blocking (pyroute2 runs its own event loop): call it from a thread in async code."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def ensure_bridge(bridge: str) -> None:
    """Create ``bridge`` (no uplink) if missing and bring it up."""
    from pyroute2 import IPRoute

    try:
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=bridge)
            if not idx:
                ipr.link("add", ifname=bridge, kind="bridge")
                idx = ipr.link_lookup(ifname=bridge)
            ipr.link("set", index=idx[0], state="up")
    except Exception as e:  # pyroute2 raises NetlinkError and OSError subclasses
        raise DriverError(
            f"cannot create or bring up bridge {bridge}: {e} (needs root / CAP_NET_ADMIN)"
        ) from e


def ensure_tap(tap: str, bridge: str, mtu: int | None = None) -> None:
    """Create persistent tap ``tap`` if missing, enslave it to ``bridge`` and bring it up.

    A tap that is already enslaved (the network backend may have moved it to a tenant
    network's bridge) stays where it is; it is only brought up.
    """
    from pyroute2 import IPRoute

    enslaved = Path("/sys/class/net", tap, "master").exists()
    if not enslaved:
        ensure_bridge(bridge)
    try:
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=tap)
            if not idx:
                ipr.link("add", ifname=tap, kind="tuntap", mode="tap")
                idx = ipr.link_lookup(ifname=tap)
            kwargs: dict[str, object] = {"state": "up"}
            if not enslaved:
                kwargs["master"] = ipr.link_lookup(ifname=bridge)[0]
            if mtu:
                kwargs["mtu"] = mtu
            ipr.link("set", index=idx[0], **kwargs)
    except Exception as e:
        raise DriverError(f"cannot set up tap {tap} on bridge {bridge}: {e}") from e


def delete_link(name: str) -> None:
    """Remove a link if it exists (idempotent)."""
    if not link_exists(name):
        return
    from pyroute2 import IPRoute

    try:
        with IPRoute() as ipr:
            for idx in ipr.link_lookup(ifname=name):
                ipr.link("del", index=idx)
    except Exception as e:
        if link_exists(name):
            raise DriverError(f"cannot delete link {name}: {e}") from e


def nic_counters(tap: str) -> tuple[int, int]:
    """(guest rx bytes, guest tx bytes) of a tap: the host's tx is the guest's rx."""
    stats = Path("/sys/class/net", tap, "statistics")
    try:
        host_tx = int((stats / "tx_bytes").read_text())
        host_rx = int((stats / "rx_bytes").read_text())
    except (OSError, ValueError):
        return 0, 0
    return host_tx, host_rx


def nic_counters_netlink(tap: str) -> tuple[int, int]:
    """``nic_counters`` over netlink, for a process whose /sys shows another namespace's devices
    (an agent entered into a host namespace with ``nsenter --net``). Blocking: call from a thread."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=tap)
        if not found:
            return 0, 0
        stats = ipr.get_links(found[0])[0].get_attr("IFLA_STATS64")
    if not stats:
        return 0, 0
    return int(stats["tx_bytes"]), int(stats["rx_bytes"])


def argv_taps(argv: list[str]) -> list[str]:
    """The tap devices a QEMU command line opens."""
    taps = []
    for a, b in zip(argv, argv[1:], strict=False):
        if a == "-netdev" and b.startswith("tap,"):
            opts = dict(kv.split("=", 1) for kv in b.split(",")[1:] if "=" in kv)
            if opts.get("ifname"):
                taps.append(opts["ifname"])
    return taps
