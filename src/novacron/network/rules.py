"""Security group rules: checking one as asked for, field by field, and making its row.

A rule's remote side is a CIDR, a group (its members' addresses) or a label selector (the matching
VMs' addresses). Protocols include application protocols (``http``, ``tls`` with an SNI allow-list,
``ssh``, ``dns``), recognised from the traffic itself.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from novacron.db.base import new_id
from novacron.db.models import Project, SecurityGroup, SecurityGroupRule
from novacron.errors import InvalidInput
from novacron.identity.principal import Principal
from novacron.network import service
from novacron.network.service import at

SNI = re.compile(r"^(\*\.)?([A-Za-z0-9-]{1,63}\.)*[A-Za-z0-9-]{1,63}$")
PORTED = {"tcp", "udp", "http", "tls", "ssh", "dns"}


@dataclass(frozen=True)
class RuleSpec:
    """A rule as the caller asked for it (already checked for shape by the API)."""

    direction: str
    ethertype: str = "IPv4"
    protocol: str | None = None
    port_min: int | None = None
    port_max: int | None = None
    remote_cidr: str | None = None
    remote_group: str | None = None
    remote_labels: dict[str, str] | None = None
    sni_allow: list[str] = field(default_factory=list)
    action: str = "allow"


def _check_remote_and_protocol(spec: RuleSpec, prefix: str) -> None:
    remotes = [n for n in ("remote_cidr", "remote_group", "remote_labels") if getattr(spec, n) is not None]
    if len(remotes) > 1:
        raise InvalidInput(at(prefix, remotes[1]), f"give one remote side only (also got {remotes[0]})")
    version = 4 if spec.ethertype == "IPv4" else 6
    if spec.protocol == "icmp" and version == 6:
        raise InvalidInput(at(prefix, "protocol"), "icmp is IPv4; use icmpv6 with ethertype IPv6")
    if spec.protocol == "icmpv6" and version == 4:
        raise InvalidInput(at(prefix, "protocol"), "icmpv6 needs ethertype IPv6")


def _checked_cidr(spec: RuleSpec, prefix: str) -> str | None:
    if spec.remote_cidr is None:
        return None
    try:
        net = ipaddress.ip_network(spec.remote_cidr, strict=False)
    except ValueError as exc:
        reason = f"'{spec.remote_cidr}' is not a CIDR ({exc})"
        raise InvalidInput(at(prefix, "remote_cidr"), reason) from exc
    if net.version != (4 if spec.ethertype == "IPv4" else 6):
        reason = f"an IPv{net.version} CIDR in a rule for {spec.ethertype} (ethertype)"
        raise InvalidInput(at(prefix, "remote_cidr"), reason)
    return str(net)


def _checked_ports(spec: RuleSpec, prefix: str) -> tuple[int | None, int | None]:
    """The port range, one end standing for both when only one is given."""
    port_min, port_max = spec.port_min, spec.port_max
    if port_min is None and port_max is None:
        return None, None
    if spec.protocol not in PORTED:
        reason = f"ports need a protocol with ports ({', '.join(sorted(PORTED))})"
        raise InvalidInput(at(prefix, "port_min"), reason)
    port_min = port_min if port_min is not None else port_max
    port_max = port_max if port_max is not None else port_min
    assert port_min is not None and port_max is not None
    if port_min > port_max:
        raise InvalidInput(at(prefix, "port_max"), f"{port_max} is below port_min {port_min}")
    return port_min, port_max


def _check_sni(spec: RuleSpec, prefix: str) -> None:
    if spec.sni_allow and spec.protocol != "tls":
        raise InvalidInput(at(prefix, "sni_allow"), "an SNI allow-list needs protocol tls")
    for i, name in enumerate(spec.sni_allow):
        if not SNI.match(name):
            raise InvalidInput(at(prefix, f"sni_allow.{i}"), f"'{name}' is not a host name (or *.suffix)")


def checked_rule(
    session: Session, principal: Principal, group: SecurityGroup, spec: RuleSpec, prefix: str
) -> SecurityGroupRule:
    """The row of a rule of ``group``; each refusal names the field at fault under ``prefix``."""
    _check_remote_and_protocol(spec, prefix)
    cidr = _checked_cidr(spec, prefix)
    port_min, port_max = _checked_ports(spec, prefix)
    _check_sni(spec, prefix)
    remote_group_id = None
    if spec.remote_group is not None:
        project = session.get(Project, group.project_id)
        assert project is not None
        field_name = at(prefix, "remote_group")
        remote_group_id = service.find_group(session, principal, spec.remote_group, project, field_name).id
    if spec.remote_labels is not None and not spec.remote_labels:
        raise InvalidInput(at(prefix, "remote_labels"), "an empty selector matches nothing")
    return SecurityGroupRule(
        id=new_id("sgr"),
        group_id=group.id,
        tenant_id=group.tenant_id,
        direction=spec.direction,
        ethertype=spec.ethertype,
        protocol=spec.protocol,
        port_min=port_min,
        port_max=port_max,
        remote_cidr=cidr,
        remote_group_id=remote_group_id,
        remote_labels=dict(spec.remote_labels) if spec.remote_labels else None,
        sni_allow=list(spec.sni_allow),
        action=spec.action,
    )
