"""The request spec: what a VM asks of its host, fixed when the VM is created (Nova's RequestSpec)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RequestSpec:
    """Static constraints of one placement; hashable, so equal requests share a candidate list."""

    #: id of the aggregate the host must belong to
    aggregate: str | None = None
    #: label pairs the host must carry, sorted
    labels: tuple[tuple[str, str], ...] = ()
    required_traits: frozenset[str] = field(default_factory=frozenset)
    forbidden_traits: frozenset[str] = field(default_factory=frozenset)
    #: the VM's tenant, set at claim time only when some aggregate reserves hosts for tenants
    tenant: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RequestSpec:
        data = data or {}
        return cls(
            aggregate=data.get("aggregate") or None,
            labels=tuple(sorted((str(k), str(v)) for k, v in (data.get("labels") or {}).items())),
            required_traits=frozenset(data.get("required_traits") or ()),
            forbidden_traits=frozenset(data.get("forbidden_traits") or ()),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.aggregate:
            out["aggregate"] = self.aggregate
        if self.labels:
            out["labels"] = dict(self.labels)
        if self.required_traits:
            out["required_traits"] = sorted(self.required_traits)
        if self.forbidden_traits:
            out["forbidden_traits"] = sorted(self.forbidden_traits)
        return out

    def describe(self) -> str:
        parts = []
        if self.aggregate:
            parts.append(f"aggregate {self.aggregate}")
        if self.labels:
            parts.append("labels " + ",".join(f"{k}={v}" for k, v in self.labels))
        if self.required_traits:
            parts.append("traits " + ",".join(sorted(self.required_traits)))
        if self.forbidden_traits:
            parts.append("no traits " + ",".join(sorted(self.forbidden_traits)))
        return "; ".join(parts) or "no constraints"
