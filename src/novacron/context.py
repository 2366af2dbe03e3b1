"""Everything one NovaCron process shares, built once at start-up and passed explicitly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from novacron.config import Settings
from novacron.db.base import Database

if TYPE_CHECKING:
    from novacron.agent.agent import NodeAgent
    from novacron.identity.tokens import TokenService
    from novacron.tasks.runner import TaskRunner


@dataclass
class Context:
    settings: Settings
    db: Database
    tokens: TokenService
    tasks: TaskRunner | None = None
    #: the embedded node agent of an all-in-one node
    agent: NodeAgent | None = None
    extras: dict[str, Any] = field(default_factory=dict)
