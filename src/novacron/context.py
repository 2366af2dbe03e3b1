"""Everything one NovaCron process shares, built once at start-up and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from novacron.compute.reports import MetricsStore
from novacron.config import Settings
from novacron.db.base import Database

if TYPE_CHECKING:
    from novacron.agent.runtime import AgentRuntime
    from novacron.identity.tokens import TokenService
    from novacron.tasks.runner import TaskRunner


@dataclass
class Context:
    settings: Settings
    db: Database
    tokens: TokenService
    metrics: MetricsStore = field(default_factory=MetricsStore)
    tasks: TaskRunner | None = None
    #: the embedded node agent of an all-in-one node
    agent: AgentRuntime | None = None
    extras: dict[str, Any] = field(default_factory=dict)
