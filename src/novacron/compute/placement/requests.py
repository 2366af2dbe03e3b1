"""Turn what a VM create asks for into its request spec, refusing bad references by field."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from novacron.compute.placement.spec import RequestSpec
from novacron.compute.scope import get_visible
from novacron.db.models import Aggregate, Flavor, Project, ServerGroup
from novacron.errors import DomainError, InvalidInput
from novacron.identity.principal import Principal


def request_for_create(
    session: Session,
    principal: Principal,
    project: Project,
    flavor: Flavor,
    *,
    server_group: str | None = None,
    aggregate: str | None = None,
    labels: dict[str, str] | None = None,
) -> tuple[dict[str, object], str | None]:
    """(the VM's ``placement`` spec, its server group id) for a create in ``project``."""
    group_id = None
    if server_group is not None:
        try:
            group = get_visible(session, ServerGroup, server_group, principal, "server group")
        except DomainError as exc:
            raise InvalidInput("server_group", f"no server group '{server_group}' is visible to you") from exc
        if group.project_id != project.id:
            raise InvalidInput("server_group", f"server group '{group.name}' belongs to another project")
        group_id = group.id
    aggregate_id = None
    if aggregate is not None:
        aggregate_id = session.scalar(
            select(Aggregate.id).where((Aggregate.id == aggregate) | (Aggregate.name == aggregate))
        )
        if aggregate_id is None:
            raise InvalidInput("placement.aggregate", f"no aggregate '{aggregate}'; see GET /v1/aggregates")
    spec = RequestSpec(
        aggregate=aggregate_id,
        labels=tuple(sorted((labels or {}).items())),
        required_traits=frozenset(flavor.required_traits or ()),
        forbidden_traits=frozenset(flavor.forbidden_traits or ()),
    )
    return spec.to_dict(), group_id
