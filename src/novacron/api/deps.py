"""FastAPI dependencies: the process context, a database session, the caller."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.requests import HTTPConnection

from novacron.api.clientaddr import client_address
from novacron.api.concurrency import Idempotency
from novacron.api.errors import Problem, from_domain, status_of
from novacron.api.openapi import raises
from novacron.errors import DomainError
from novacron.identity.authz import scoped_kind
from novacron.identity.principal import Principal
from novacron.service import Service

if TYPE_CHECKING:
    from novacron.context import Context


def ctx_of(request: Request) -> Context:
    """The application's context (settings, database, token services)."""
    ctx: Context = request.app.state.ctx
    return ctx


async def get_ctx(request: Request) -> Context:
    """The context, as a dependency."""
    # async on purpose: FastAPI runs sync dependencies in the thread pool, a hop per request
    return ctx_of(request)


CtxDep = Annotated["Context", Depends(get_ctx)]


def get_session(request: Request) -> Iterator[Session]:
    """A read-write session for the request, committed when the handler returns."""
    with ctx_of(request).db.session() as session:
        yield session


#: ``scope="function"``: the transaction commits before the response is sent, so a client that got
#: 201 reads its write at once, and a failed commit is the response's error rather than unseen
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_read_session(request: Request) -> Iterator[Session]:
    """A read-only session for the request (no write lock)."""
    with ctx_of(request).db.read_session() as session:
        yield session


#: for handlers that only read (GET): no write lock, so reads never queue behind writers
ReadSessionDep = Annotated[Session, Depends(get_read_session)]


def bearer_token(conn: HTTPConnection) -> str | None:
    """The token of ``Authorization: Bearer``: the only place a REST call may carry one (a token in
    a URL or a cookie ends up in logs, histories and Referer headers, or rides cross-site requests)."""
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def handshake_principal(ctx: Context, conn: HTTPConnection) -> Principal:
    """A user opening a WebSocket or an event stream: ``Authorization: Bearer``, or (browsers cannot
    send headers there) a single-use ``?ticket=`` from ``POST /v1/tickets`` for this very path.
    Blocking (database): call it in a thread."""
    from novacron.identity import tickets

    token = bearer_token(conn)
    if token:
        principal = authenticate_any(ctx, token, client_address(conn))
        enrol_gate(principal, conn.url.path)
        return principal
    ticket = conn.query_params.get("ticket")
    if ticket:
        return tickets.redeem(ctx.db, ctx.tokens, ticket, conn.url.path)
    raise Problem(
        401,
        "Unauthorized",
        "Send 'Authorization: Bearer <token>', or '?ticket=' from POST /v1/tickets (browsers).",
        headers={"WWW-Authenticate": 'Bearer realm="novacron"'},
    )


def authenticate_any(ctx: Context, token: str, source: str | None = None) -> Principal:
    """A user's access token, an API key (``source``: the client's address, recorded as its last
    use), or a joined node's credential; ``Problem(401)`` for a refused one."""
    from novacron.compute import nodes
    from novacron.identity import apikeys

    if token.startswith(apikeys.PREFIX):
        return apikeys.authenticate(ctx.db, token, source)

    if token.startswith(nodes.NODE_PREFIX):
        try:
            return nodes.authenticate(ctx.db, token)
        except DomainError as exc:
            # as a Problem, like a refused user token: the middleware and WebSockets answer it as is
            raise from_domain(exc) from exc
    return ctx.tokens.authenticate(token)


def unauthenticated() -> Problem:
    """The 401 problem for a request without a usable bearer token."""
    return Problem(
        401,
        "Unauthorized",
        "Send 'Authorization: Bearer <token>'; get one with POST /v1/tokens or 'novacron login'.",
        headers={"WWW-Authenticate": 'Bearer realm="novacron"'},
    )


def current_principal(request: Request) -> Principal:
    """Who sent the request, from its bearer token; a 401 problem if nobody."""
    from novacron.api.transport import PREAUTH_KEY

    token = bearer_token(request)
    if not token:
        raise unauthenticated()
    # a request with a body was authenticated before its body was read (api/transport.py)
    pre = request.scope.get("state", {}).get(PREAUTH_KEY)
    if pre is not None and pre[0] == token:
        principal: Principal = pre[1]
    else:
        principal = authenticate_any(ctx_of(request), token, client_address(request))
    enrol_gate(principal, request.url.path)
    request.state.principal = principal
    return principal


#: what a token that may only enrol a second factor may reach (``identity/mfa_policy.py``)
ENROL_PATHS = ("/v1/mfa", "/v1/tokens/current", "/v1/sso/logout")


def enrol_gate(principal: Principal, path: str) -> None:
    """403 for a token of a user whose tenant requires a second factor it has not enrolled,
    anywhere but the enrolment endpoints and its own session."""
    if principal.extra.get("mfa") == "enrol" and not path.startswith(ENROL_PATHS):
        raise Problem(
            403,
            "Second factor required",
            "Your tenant requires a second factor: enrol an authenticator app (POST /v1/mfa/totp, then "
            "POST /v1/mfa/totp/confirm with a code; novacron mfa enrol), then refresh your token.",
        )


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def require(permission: str) -> Callable[[Principal], Coroutine[Any, Any, Principal]]:
    """A dependency that lets through only a principal holding ``permission`` (else 403)."""

    async def check(principal: PrincipalDep) -> Principal:
        # a VM permission held on a project or labelled VMs only lets through to the service,
        # which decides per VM (identity/authz.py)
        if not (principal.may(permission) if scoped_kind(permission) else principal.can(permission)):
            raise Problem(
                403, "Forbidden", f"Your role '{principal.role}' lacks the permission '{permission}'."
            )
        return principal

    return check


def require_handshake(permission: str) -> Callable[[Request], Principal]:
    """``require`` for an event stream a browser may open with a ticket instead of a header."""

    def check(request: Request) -> Principal:
        principal = handshake_principal(ctx_of(request), request)
        request.state.principal = principal
        if not principal.can(permission):
            raise Problem(
                403, "Forbidden", f"Your role '{principal.role}' lacks the permission '{permission}'."
            )
        return principal

    return check


S = TypeVar("S", bound=Service)


def service(cls: type[S], permission: str | None, *, write: bool = True) -> Callable[..., S]:
    """The dependency that builds ``cls`` for a caller holding ``permission`` (None: any caller
    with a valid token; the service checks what it needs itself).

    ``write=False`` gives the service a read-only session (GET handlers: no write lock). A route
    declares ``Annotated[FlavorService, Depends(service(FlavorService, "flavor:write"))]`` and
    never sees the session itself.
    """

    def build(session: Session, principal: Principal, request: Request) -> S:
        built = cls(session, principal, ctx_of(request))
        built.gate = permission
        return built

    # set as objects, not the strings this module's annotations are: ``Depends(require(...))`` is
    # local to this call, where FastAPI's resolution of string annotations cannot see it
    # what the service says it refuses with is documented on every operation that builds it
    raises(*(status_of(error) for error in cls.raises))(build)
    # the OpenAPI document follows the service methods an endpoint calls (api/openapi.py)
    build.service_class = cls  # type: ignore[attr-defined]
    build.__annotations__ = {
        "session": SessionDep if write else ReadSessionDep,
        "principal": Annotated[Principal, Depends(require(permission))] if permission else PrincipalDep,
        "request": Request,
        "return": cls,
    }
    return build


def idempotency(request: Request, session: SessionDep, principal: PrincipalDep) -> Idempotency:
    """The ``Idempotency-Key`` of a create, kept in the same transaction as the create's writes."""
    return Idempotency(request, principal, session)


IdempotencyDep = Annotated[Idempotency, Depends(idempotency)]


def read_idempotency(request: Request, session: ReadSessionDep, principal: PrincipalDep) -> Idempotency:
    """An ``Idempotency-Key`` looked up without the write lock, to replay before long read-only work
    (a rebalance's planning); the write itself is keyed again with ``IdempotencyDep``."""
    return Idempotency(request, principal, session)


ReadIdempotencyDep = Annotated[Idempotency, Depends(read_idempotency)]
