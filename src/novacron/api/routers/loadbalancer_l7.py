"""/v1/loadbalancers/{id}/listeners/{lid}/l7policies: a listener's L7 policies with their rules.

A policy's ETag is its listener's (the policies are kept whole on the listener); like every change
of a load balancer, each answers at once and is realised by its ``loadbalancer.apply`` task.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from novacron.api.concurrency import check_if_match, set_etag
from novacron.api.deps import IdempotencyDep, service
from novacron.api.routers.loadbalancers import ONE, L7PolicyIn, L7RuleIn
from novacron.lbaas.l7policies import L7PolicyService

router = APIRouter(tags=["load balancers"])

PolicyReader = Annotated[L7PolicyService, Depends(service(L7PolicyService, "loadbalancer:read", write=False))]
PolicyWriter = Annotated[L7PolicyService, Depends(service(L7PolicyService, "loadbalancer:write"))]
POLICIES = ONE + "/listeners/{listener_id}/l7policies"
POLICY = POLICIES + "/{l7policy_id}"


class L7PolicyUpdate(BaseModel):
    """Only the fields sent change; ``rules`` replaces the rules whole."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["REDIRECT_TO_POOL", "REDIRECT_TO_URL", "REJECT"] | None = None
    position: int | None = None
    rules: list[L7RuleIn] | None = Field(default=None, max_length=32)
    redirect_pool_id: str | None = Field(default=None, max_length=64)
    redirect_url: str | None = Field(default=None, max_length=2048)
    redirect_http_code: int | None = None


class L7RuleOut(BaseModel):
    id: str
    type: str
    compare_type: str
    value: str
    key: str | None
    invert: bool


class L7PolicyOut(BaseModel):
    id: str
    listener_id: str
    action: str
    position: int
    rules: list[L7RuleOut]
    redirect_pool_id: str | None
    redirect_url: str | None
    redirect_http_code: int

    @classmethod
    def of(cls, listener_id: str, policy: dict[str, Any]) -> L7PolicyOut:
        return cls(listener_id=listener_id, **policy)


class L7PolicyList(BaseModel):
    items: list[L7PolicyOut]


@router.get(POLICIES, response_model=L7PolicyList)
def list_l7policies(loadbalancer_id: str, listener_id: str, policies: PolicyReader) -> L7PolicyList:
    _, listener = policies.listener(loadbalancer_id, listener_id)
    return L7PolicyList(items=[L7PolicyOut.of(listener.id, p) for p in policies.list(listener)])


@router.post(POLICIES, status_code=201, response_model=L7PolicyOut)
def create_l7policy(
    loadbalancer_id: str, listener_id: str, body: L7PolicyIn, policies: PolicyWriter, idem: IdempotencyDep
) -> Response:
    if (replay := idem.replay(body)) is not None:
        return replay
    lb, listener = policies.listener(loadbalancer_id, listener_id)
    made = policies.create(lb, listener, body.model_dump())
    return idem.created(L7PolicyOut.of(listener.id, made), listener)


@router.get(POLICY, response_model=L7PolicyOut)
def get_l7policy(
    loadbalancer_id: str, listener_id: str, l7policy_id: str, response: Response, policies: PolicyReader
) -> L7PolicyOut:
    _, listener = policies.listener(loadbalancer_id, listener_id)
    set_etag(response, listener)
    return L7PolicyOut.of(listener.id, policies.get(listener, l7policy_id))


@router.patch(POLICY, response_model=L7PolicyOut)
def update_l7policy(  # noqa: PLR0913 - the path's three ids, the body, the request and the service
    loadbalancer_id: str,
    listener_id: str,
    l7policy_id: str,
    body: L7PolicyUpdate,
    request: Request,
    response: Response,
    policies: PolicyWriter,
) -> L7PolicyOut:
    lb, listener = policies.listener(loadbalancer_id, listener_id)
    check_if_match(request, listener)
    changed = policies.update(lb, listener, l7policy_id, body.model_dump(exclude_unset=True))
    set_etag(response, listener)
    return L7PolicyOut.of(listener.id, changed)


@router.delete(POLICY, status_code=204)
def delete_l7policy(
    loadbalancer_id: str, listener_id: str, l7policy_id: str, request: Request, policies: PolicyWriter
) -> Response:
    lb, listener = policies.listener(loadbalancer_id, listener_id)
    check_if_match(request, listener)
    policies.delete(lb, listener, l7policy_id)
    return Response(status_code=204)
