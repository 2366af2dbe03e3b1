"""FastAPI dependencies: the process context, a database session, the caller."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from novacron.api.errors import Problem
from novacron.identity.principal import Principal

if TYPE_CHECKING:
    from novacron.context import Context


def ctx_of(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


async def get_ctx(request: Request) -> Context:
    # async on purpose: FastAPI runs sync dependencies in the thread pool, a hop per request
    return ctx_of(request)


CtxDep = Annotated["Context", Depends(get_ctx)]


def get_session(request: Request) -> Iterator[Session]:
    with ctx_of(request).db.session() as session:
        yield session


#: ``scope="function"``: the transaction commits before the response is sent, so a client that got
#: 201 reads its write at once, and a failed commit is the response's error rather than unseen
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_read_session(request: Request) -> Iterator[Session]:
    with ctx_of(request).db.read_session() as session:
        yield session


#: for handlers that only read (GET): no write lock, so reads never queue behind writers
ReadSessionDep = Annotated[Session, Depends(get_read_session)]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    # browsers cannot set headers on EventSource / WebSocket: accept a cookie or query parameter
    return request.cookies.get("novacron_token") or request.query_params.get("access_token")


def authenticate_any(ctx: Context, token: str) -> Principal:
    """A user's access token, or a joined node's credential."""
    from novacron.compute import nodes

    if token.startswith(nodes.NODE_PREFIX):
        return nodes.authenticate(ctx.db, token)
    return ctx.tokens.authenticate(token)


def current_principal(request: Request) -> Principal:
    token = bearer_token(request)
    if not token:
        raise Problem(
            401,
            "Unauthorized",
            "Send 'Authorization: Bearer <token>'; get one with POST /v1/tokens or 'novacron login'.",
            headers={"WWW-Authenticate": 'Bearer realm="novacron"'},
        )
    principal = authenticate_any(ctx_of(request), token)
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require(permission: str) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    async def check(principal: PrincipalDep) -> Principal:
        if not principal.can(permission):
            raise Problem(
                403, "Forbidden", f"Your role '{principal.role}' lacks the permission '{permission}'."
            )
        return principal

    return check
