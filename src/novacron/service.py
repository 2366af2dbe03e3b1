"""The base of every area's service: one caller, one transaction, the platform's shared parts.

A service (``compute/flavors.py``'s ``FlavorService``, ...) owns its area's writes, validation
and events, and raises ``novacron.errors`` when it refuses. It is built per request by
``api/deps.py`` (or by a controller or a test) with the transaction to work in and the caller to
act for; it never commits, so a refused request leaves nothing behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from sqlalchemy.orm import Session

from novacron.errors import DomainError
from novacron.identity.principal import Principal

if TYPE_CHECKING:
    from novacron.context import Context


class Service:
    """What every service is given: the session it writes in, the caller, the process context."""

    #: the errors it raises beyond what its inputs imply (a path's 404, a body's 422, a write's
    #: 409), e.g. ``(Unavailable,)``: the OpenAPI document declares them on the routes using it
    raises: ClassVar[tuple[type[DomainError], ...]] = ()

    def __init__(self, session: Session, principal: Principal, ctx: Context | None = None) -> None:
        self.session = session
        self.principal = principal
        self._ctx = ctx
        #: the permission the request was let through with (``api/deps.service``); a service whose
        #: resources are checked one by one (``identity/authz.py``) decides each with it
        self.gate: str | None = None

    @property
    def ctx(self) -> Context:
        """The process context; a service that needs it is built with one."""
        if self._ctx is None:
            raise RuntimeError(f"{type(self).__name__} needs the process context; pass ctx=")
        return self._ctx
