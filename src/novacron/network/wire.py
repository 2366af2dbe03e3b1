"""JSON form of a host's desired network state: what a ``network_sync`` host operation carries.

The control plane sends a host its *whole* network state each time (not a diff), so an agent that
missed an operation or restarted converges on the next one. ``to_dict``/``from_dict`` round-trip
the frozen specs of ``network/model.py`` through plain JSON types (tuples become lists).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from novacron.network.model import (
    NetworkSpec,
    PortSpec,
    RouterSpec,
)

T = TypeVar("T")


@dataclass(frozen=True)
class HostNetworkState:
    """Everything one host's datapath must have; anything else of ours on the host is removed."""

    networks: tuple[NetworkSpec, ...] = ()
    #: network id -> the underlay IPs (VTEPs) of the other hosts that have that network
    peers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: the ports whose devices live on this host
    ports: tuple[PortSpec, ...] = ()
    #: network id -> every port of that network (static leases), for the networks whose DHCP
    #: server runs on this host
    dhcp: Mapping[str, tuple[PortSpec, ...]] = field(default_factory=dict)
    #: routers whose namespace runs on this host
    routers: tuple[RouterSpec, ...] = ()


def to_dict(obj: Any) -> Any:
    """A spec (or a tuple/dict of them) as JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple | list):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value) if len(inner) == 1 else value
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v) for v in value)
        return tuple(_convert(a, v) for a, v in zip(args, value, strict=True))
    if origin in (Mapping, dict) or tp is Mapping:
        return {str(k): _convert(args[1], v) for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return from_dict(tp, value)
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Build ``cls`` (a spec dataclass) from ``to_dict`` output; unknown keys are refused."""
    hints = _hints(cls)  # type: ignore[arg-type]
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {', '.join(sorted(unknown))}")
    return cls(**{k: _convert(hints[k], v) for k, v in data.items()})


def state_from_dict(data: Mapping[str, Any]) -> HostNetworkState:
    return from_dict(HostNetworkState, data)
