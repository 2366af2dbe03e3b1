"""How the CLI shows a VM's guest information: its addresses with their source, and what the
guest's qemu-guest-agent tells (hostname, OS, addresses per NIC, filesystems and their use)."""

from __future__ import annotations

from typing import Any

from novacron.cli.output import Column, human_size

#: ``ip_source`` as people read it
SOURCES = {"agent": "guest agent", "lease": "DHCP lease", "port": "port (assigned)"}


def ip_cell(vm: dict[str, Any]) -> str:
    """The VM list's IP column: the first address (and how many more)."""
    ips = vm.get("ips") or []
    if not ips:
        return "-"
    return str(ips[0]) + (f" (+{len(ips) - 1})" if len(ips) > 1 else "")


def addresses(vm: dict[str, Any]) -> str:
    ips = vm.get("ips") or []
    if not ips:
        return "-"
    return f"{', '.join(ips)} (source: {SOURCES.get(vm.get('ip_source') or '', '?')})"


def _guest(vm: dict[str, Any]) -> dict[str, Any]:
    return vm.get("guest") or {}


def os_text(vm: dict[str, Any]) -> str:
    os = _guest(vm).get("os") or {}
    name = os.get("pretty-name") or os.get("name") or ""
    kernel = os.get("kernel-release") or ""
    return " · ".join(x for x in (name, kernel and f"kernel {kernel}", os.get("machine")) if x) or "-"


def nics_text(vm: dict[str, Any]) -> str:
    nics = _guest(vm).get("interfaces") or []
    return "; ".join(f"{n['name']} {n['mac']} {' '.join(n['ips']) or '(no address)'}" for n in nics) or "-"


def filesystems_text(vm: dict[str, Any]) -> str:
    parts = []
    for f in _guest(vm).get("filesystems") or []:
        used, total = f.get("used_bytes"), f.get("total_bytes")
        use = f"{human_size(used)} of {human_size(total)}" if used is not None and total else "use unknown"
        parts.append(f"{f['mountpoint']} ({f['type']}) {use}")
    return "; ".join(parts) or "-"


def agent_text(vm: dict[str, Any]) -> str:
    at = _guest(vm).get("agent_at")
    return f"answers (last {at})" if at else "none answers"


#: the lines ``vm show`` adds
GUEST_FIELDS: list[Column] = [
    ("addresses", addresses),
    ("guest_agent", agent_text),
    ("guest_hostname", lambda v: _guest(v).get("hostname") or "-"),
    ("guest_os", os_text),
    ("guest_nics", nics_text),
    ("guest_filesystems", filesystems_text),
]
