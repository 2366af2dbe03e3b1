"""/v1/auth/explain: the authorization decision for a user, an action and a resource, with why."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from novacron.api.deps import service
from novacron.identity.explain import RESOURCE_FORMS, ExplainService

router = APIRouter(prefix="/v1/auth", tags=["roles"])

Explainer = Annotated[ExplainService, Depends(service(ExplainService, None, write=False))]


class ExplainOut(BaseModel):
    user_id: str
    username: str
    action: str
    resource: str
    #: "allow" or "deny"
    decision: str
    #: the role assignment (or "role:<name>", or an API key) that allowed; null when denied
    allowed_by: str | None
    reasons: list[str]


@router.get("/explain", response_model=ExplainOut)
def explain(
    explainer: Explainer,
    user: Annotated[str, Query(max_length=64, description="id or username; yourself, or one you administer")],
    action: Annotated[str, Query(max_length=64, description="a permission, e.g. vm:delete")],
    resource: Annotated[str, Query(max_length=140, description=RESOURCE_FORMS)],
) -> ExplainOut:
    """Would ``user`` be allowed ``action`` on ``resource`` now, and which role (or why none) decides."""
    done = explainer.explain(user, action, resource)
    d = done.decision
    return ExplainOut(
        user_id=done.user_id,
        username=done.username,
        action=action,
        resource=done.resource,
        decision="allow" if d.allowed else "deny",
        allowed_by=d.by,
        reasons=list(d.reasons),
    )
