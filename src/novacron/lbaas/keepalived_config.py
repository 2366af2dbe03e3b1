"""Render one amphora's ``keepalived.conf`` (VRRP) and its two helper scripts.

The two amphorae of an ACTIVE_STANDBY load balancer run one VRRP instance each, as Octavia's
keepalived template does:

- both start in state BACKUP with ``nopreempt``; the MASTER amphora's higher priority (100 against
  90) only decides the first election: a side that comes back after a failover stays standby, so
  the VIP does not move twice (keepalived's ``nopreempt`` needs the initial state BACKUP);
- VRRP version 3 (sub-second adverts; it has no authentication, which is off) with unicast adverts
  to the peer's address (``unicast_src_ip`` / ``unicast_peer``), so nothing is multicast onto the
  tenant network and only the peer's adverts count;
- the VIP (a host address: /32 or /128) on the amphora's interface, added by keepalived on the
  side that holds the MASTER state and announced with gratuitous ARP / unsolicited NA;
- ``check_haproxy``, a ``vrrp_script`` that asks the local HAProxy's admin socket ``show info``
  (the socket is served by the worker that serves the traffic): when it fails twice the instance
  goes to FAULT, drops the VIP and its priority-0 advert hands the VIP to the peer at once;
- ``notify`` writes each state change (MASTER, BACKUP, FAULT, STOP) to the ``vrrp.state`` file.

Paths written into the configuration and scripts are the platform's own state directory, checked
to be plain (no spaces, quotes or shell characters); every other value comes from a validated
:class:`~novacron.lbaas.model.LoadBalancerSpec`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from novacron.lbaas.haproxy_config import name
from novacron.lbaas.model import LoadBalancerSpec

CONFIG = "keepalived.conf"
CHECK_SCRIPT = "check_haproxy.sh"
NOTIFY_SCRIPT = "notify.sh"
STATE_FILE = "vrrp.state"
#: the check runs every second; 2 failures put the instance in FAULT, 2 successes bring it back
CHECK_INTERVAL_S = 1
CHECK_FALL = 2
CHECK_RISE = 2
_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9_./+-]+$")


@dataclass(frozen=True)
class VRRPPaths:
    """Where one amphora's keepalived files live; ``haproxy_socket`` is its HAProxy's admin socket."""

    state_dir: Path
    haproxy_socket: Path

    def __post_init__(self) -> None:
        for path in (self.state_dir, self.haproxy_socket):
            if not _PLAIN_PATH.match(str(path)):
                raise ValueError(f"{path}: state paths must be absolute and plain (letters, digits, _./+-)")

    @property
    def config(self) -> Path:
        return self.state_dir / CONFIG

    @property
    def check_script(self) -> Path:
        return self.state_dir / CHECK_SCRIPT

    @property
    def notify_script(self) -> Path:
        return self.state_dir / NOTIFY_SCRIPT

    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE


def vip_with_prefix(spec: LoadBalancerSpec) -> str:
    """The VIP as a host address (/32 or /128): the amphora's own address carries the subnet."""
    vip = ipaddress.ip_address(spec.vip_address)
    return f"{vip}/{vip.max_prefixlen}"


def check_script(paths: VRRPPaths) -> str:
    """Exit 0 while the local HAProxy's worker answers ``show info`` on its admin socket."""
    return (
        "#!/bin/sh\n"
        "# rendered by NovaCron: is the local HAProxy serving? (keepalived's check_haproxy)\n"
        f"echo 'show info' | socat -t 1 -T 1 stdio 'unix-connect:{paths.haproxy_socket}' 2>/dev/null"
        " | grep -q '^Pid:'\n"
    )


def notify_script(paths: VRRPPaths) -> str:
    """Records keepalived's new state ($3: MASTER, BACKUP, FAULT or STOP), replaced atomically."""
    new = paths.state_file.with_suffix(".new")
    return (
        "#!/bin/sh\n"
        "# rendered by NovaCron: keepalived calls it with INSTANCE <name> <state> <priority>\n"
        "umask 077\n"
        f"printf '%s\\n' \"$3\" > '{new}' && mv -f '{new}' '{paths.state_file}'\n"
    )


def render(spec: LoadBalancerSpec, amphora_id: str, paths: VRRPPaths) -> str:
    """``keepalived.conf`` for amphora ``amphora_id`` of the ACTIVE_STANDBY load balancer ``spec``."""
    if spec.topology != "ACTIVE_STANDBY":
        raise ValueError(f"load balancer {spec.id} is {spec.topology}: it has no VRRP")
    amphora = spec.amphora(amphora_id)
    peers = "\n".join(f"        {peer.vrrp_ip}" for peer in spec.peers_of(amphora_id))
    return f"""# rendered by NovaCron for load balancer {spec.id}, amphora {amphora.id} ({amphora.role})
global_defs {{
    router_id {name(amphora.id)}
    vrrp_version 3
    enable_script_security
    script_user root
}}

vrrp_script check_haproxy {{
    script "{paths.check_script}"
    interval {CHECK_INTERVAL_S}
    timeout {CHECK_INTERVAL_S * 2}
    fall {CHECK_FALL}
    rise {CHECK_RISE}
}}

vrrp_instance {name(spec.id)} {{
    state BACKUP
    interface {amphora.vrrp_interface}
    virtual_router_id {spec.router_id}
    priority {amphora.vrrp_priority}
    nopreempt
    advert_int {spec.vrrp_advert_int:g}
    unicast_src_ip {amphora.vrrp_ip}
    unicast_peer {{
{peers}
    }}
    virtual_ipaddress {{
        {vip_with_prefix(spec)} dev {amphora.vrrp_interface}
    }}
    track_script {{
        check_haproxy
    }}
    notify "{paths.notify_script}"
}}
"""
