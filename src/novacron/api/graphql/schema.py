"""The GraphQL schema: the roots, the limits, and how errors are told to the client.

A service's refusal (``novacron.errors``), a ``Problem`` (403 of a permission, an idempotency key
reused) and an input's validation are the client's errors: their message and, in ``extensions``, the
HTTP status REST would answer and the fields it names. Anything else is the server's: logged here
with its traceback, and told to the client only as "Internal server error".
"""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import GraphQLError
from pydantic import ValidationError
from strawberry.extensions import AddValidationRules
from strawberry.types import ExecutionContext

from novacron.api import validation_text as texts
from novacron.api.errors import Problem, from_domain
from novacron.api.graphql.limits import LimitsRule
from novacron.api.graphql.queries import Query
from novacron.api.graphql.subscriptions import Subscription
from novacron.api.graphql.update_mutations import Mutations
from novacron.errors import DomainError

log = logging.getLogger(__name__)
INTERNAL = "Internal server error"


def _problem_of(exc: BaseException) -> Problem | None:
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, DomainError):
        return from_domain(exc)
    if isinstance(exc, ValidationError):
        # the REST route's model refused it: its sentences (api/validation_text.py), not pydantic's,
        # and the field as the GraphQL input names it (projectId, not project_id)
        errors = [
            {"field": ".".join(_camel(p) for p in e["loc"]) or "input", "reason": texts.reason(e)}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return Problem(422, "Invalid request", detail, errors=errors)
    return None


def _camel(part: object) -> str:
    head, *rest = str(part).split("_")
    return head + "".join(w.title() for w in rest)


def client_error(error: GraphQLError) -> dict[str, Any]:
    """``error`` as the client sees it (``formatted``), the server's own errors masked."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return dict(error.formatted)
    problem = _problem_of(original)
    out = dict(error.formatted)
    if problem is None:
        out["message"] = INTERNAL
        out["extensions"] = {"code": "INTERNAL_SERVER_ERROR"}
        return out
    out["message"] = problem.detail
    out["extensions"] = {"code": problem.title, "status": problem.status, "errors": problem.errors or []}
    return out


class NovaSchema(strawberry.Schema):
    """Strawberry's schema, logging only the errors that are the server's own."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            original = error.original_error
            ours = original is None or isinstance(original, GraphQLError) or _problem_of(original) is not None
            if not ours:
                log.error("GraphQL resolver failed at %s", error.path, exc_info=original)


schema = NovaSchema(
    query=Query,
    mutation=Mutations,
    subscription=Subscription,
    extensions=[lambda: AddValidationRules([LimitsRule])],
)
