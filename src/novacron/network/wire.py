"""A host's desired network state, and its JSON form for the agent's ``network_sync`` operation.

``to_dict`` is ``dataclasses.asdict`` (tuples become lists); ``from_dict`` rebuilds the frozen
dataclasses from their type hints, so the agent gets back exactly what the control plane resolved
(``from_dict(HostState, to_dict(state)) == state``).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from novacron.network.model import AddressSet, LoadBalancerLeg, NetworkSpec, PortSpec, RouterSpec

T = TypeVar("T")


@dataclass(frozen=True)
class HostNetwork:
    network: NetworkSpec
    #: underlay (VTEP) addresses of the other hosts where this network is present
    peers: tuple[str, ...] = ()
    #: this host runs the network's DHCP server (``ensure_dhcp(network, leases)``)
    dhcp: bool = False
    #: every VM port of the network (on any host), for static leases; rules left out
    leases: tuple[PortSpec, ...] = ()


@dataclass(frozen=True)
class HostState:
    """Everything one host's datapath must have; what it has beyond this is to be removed."""

    host_id: str
    underlay_ip: str | None = None
    networks: tuple[HostNetwork, ...] = ()
    ports: tuple[PortSpec, ...] = ()
    routers: tuple[RouterSpec, ...] = ()
    #: load balancers' (or amphorae's) namespaces placed on this host
    loadbalancers: tuple[LoadBalancerLeg, ...] = ()
    #: the remote groups' and selectors' addresses the ports' rules refer to (``Rule.remote_set``)
    address_sets: tuple[AddressSet, ...] = ()


def to_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = dataclasses.asdict(obj)
    return out


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in get_args(tp) if a is not type(None)]
        return _convert(options[0], value) if len(options) == 1 else value
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        return tuple(_convert(a, v) for a, v in zip(args, value, strict=True))
    if origin is typing.Literal or tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value)  # type: ignore[arg-type]
    if tp in (int, float, str, bool):
        return tp(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Rebuild ``cls`` from its dict form, converting nested specs and tuples by type hint."""
    hints = get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: _convert(hints[k], v) for k, v in data.items() if k in fields})
