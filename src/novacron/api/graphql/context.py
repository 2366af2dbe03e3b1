"""What every GraphQL resolver is given: the caller, its transaction, the batch loaders, the audit.

One ``GraphContext`` per operation. Queries get a read-only session (no write lock); a mutation
operation gets a read-write one, committed when the whole operation is over, each mutation field
inside its own savepoint so a refused one leaves nothing behind and the others still count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import strawberry
from sqlalchemy.orm import Session

from novacron.api.errors import Problem
from novacron.identity.principal import Principal

if TYPE_CHECKING:
    from novacron.api.graphql.loaders import Loaders
    from novacron.context import Context


@dataclass
class Audited:
    """A mutation field the operation ran: the audit record names it and what it touched."""

    mutation: str
    resource_id: str | None


@dataclass
class GraphContext:
    """One operation's caller, session, loaders and the mutations it ran (for the audit record)."""

    ctx: Context
    principal: Principal
    session: Session | None
    loaders: Loaders | None = None
    audited: list[Audited] = field(default_factory=list)

    @property
    def db(self) -> Session:
        """The operation's session (subscriptions have none: they read in threads of their own)."""
        if self.session is None:
            raise RuntimeError("no session in a subscription's context")
        return self.session

    @property
    def load(self) -> Loaders:
        """The operation's batch loaders."""
        if self.loaders is None:
            raise RuntimeError("no loaders in a subscription's context")
        return self.loaders

    def require(self, permission: str) -> None:
        """The REST routes' 403, for a field the caller's role may not read or run."""
        if not self.principal.can(permission):
            raise Problem(
                403, "Forbidden", f"Your role '{self.principal.role}' lacks the permission '{permission}'."
            )


Info = strawberry.Info[GraphContext, Any]
