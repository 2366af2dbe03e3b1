"""RFC 9457 problem details: every error the API returns has this shape.

``errors`` lists each offending field as ``{"field": "body.name", "reason": "..."}``
so clients can point at the input that was wrong.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from novacron import errors as domain
from novacron.api import validation_text as texts

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class Problem(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        *,
        errors: list[dict[str, str]] | None = None,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail or title)
        #: extension members of the problem (RFC 9457 section 3.2), e.g. the policy decision
        self.extra = extra or {}
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.type = type_
        self.headers = headers or {}

    def body(self, instance: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail or self.title,
            "instance": instance,
        }
        if self.errors:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


def not_found(kind: str, ident: str) -> Problem:
    return Problem(404, "Not Found", f"No {kind} '{ident}' exists or it is not visible to you.")


def name_taken(kind: str, name: str, field: str, scope: str = "in this project") -> Problem:
    """409 for a name that must be unique and is not; names the field so clients can point at it."""
    article = "An" if kind[0] in "aeiou" else "A"
    return Problem(
        409,
        "Conflict",
        f"{article} {kind} named '{name}' already exists {scope}.",
        errors=[{"field": field, "reason": f"already used {scope}"}],
    )


#: the status of each domain error class; the first class in the error's MRO that is listed wins
STATUS_OF: dict[type[domain.DomainError], int] = {
    domain.NotFound: 404,
    domain.MalformedInput: 400,
    domain.InvalidInput: 422,
    domain.Ambiguous: 409,
    domain.Conflict: 409,
    domain.PreconditionFailed: 412,
    domain.Unauthenticated: 401,
    domain.Forbidden: 403,
    domain.TooLarge: 413,
    domain.TooManyRequests: 429,
    domain.Unavailable: 503,
    domain.DomainError: 400,
}
AUTH_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="novacron"'}


def status_of(error_class: type[domain.DomainError]) -> int:
    """The HTTP status a domain error class is answered with."""
    return next(STATUS_OF[c] for c in error_class.__mro__ if c in STATUS_OF)


def from_domain(exc: domain.DomainError) -> Problem:
    """The problem+json answer to a domain error: its status, its fields named with their part."""
    headers: dict[str, str] = {}
    if isinstance(exc, domain.Unauthenticated):
        headers.update(AUTH_CHALLENGE)
        if exc.bearer_error:
            headers["WWW-Authenticate"] += f', error="{exc.bearer_error}"'
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    errors = [{"field": f.qualified(), "reason": f.reason} for f in exc.fields]
    return Problem(
        status_of(type(exc)), exc.title, exc.detail, errors=errors, headers=headers, extra=exc.extra
    )


def problem_response(problem: Problem, request: Request) -> JSONResponse:
    return JSONResponse(
        problem.body(request.url.path),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(domain.DomainError)
    async def _domain(request: Request, exc: domain.DomainError) -> JSONResponse:
        return problem_response(from_domain(exc), request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        route = request.scope.get("route")
        errors = [
            {"field": texts.field_of(e), "reason": texts.reason(e, texts.field_info(route, e["loc"]))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{texts.short_field(e['field'])}: {e['reason']}" for e in errors)
        return problem_response(Problem(422, "Invalid request", detail, errors=errors), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title = {
            404: "Not Found",
            405: "Method Not Allowed",
            413: "Content Too Large",
            422: "Invalid request",
        }.get(exc.status_code, "Error")
        headers = dict(exc.headers or {})
        # a body over its route's limit, or with NaN (api/transport.py): name the field like every 4xx does
        errors = [{"field": "body", "reason": str(exc.detail)}] if exc.status_code == 413 else None
        errors = getattr(exc, "errors", None) or errors
        problem = Problem(exc.status_code, title, str(exc.detail), headers=headers, errors=errors)
        return problem_response(problem, request)

    @app.exception_handler(OperationalError)
    async def _database_gone(request: Request, exc: OperationalError) -> JSONResponse:
        # the database restarting or failing over: the pool drops the dead connection and a retry
        # gets a fresh one, so say so instead of "unexpected error"
        log.warning("database unreachable on %s %s: %s", request.method, request.url.path, exc.orig)
        detail = (
            "The database could not be reached; retry shortly "
            "(a change retried with its Idempotency-Key is made once)."
        )
        problem = Problem(503, "Database unavailable", detail, headers={"Retry-After": "1"})
        return problem_response(problem, request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            Problem(500, "Internal Server Error", "An unexpected error occurred; it has been logged."),
            request,
        )
