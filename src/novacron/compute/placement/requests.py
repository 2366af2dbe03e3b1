"""Turn what a VM create asks for into its request spec, refusing bad references by field."""

from __future__ import annotations

from sqlalchemy.orm import Session

from novacron.compute.placement.spec import RequestSpec
from novacron.db.models import Aggregate, Flavor, Project, ServerGroup
from novacron.db.resolve import Named, resolve
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
        named = Named("server_group")
        group_id = resolve(session, principal, ServerGroup, server_group, project=project, named=named).id
    aggregate_id = None
    if aggregate is not None:
        named = Named("placement.aggregate")
        aggregate_id = resolve(session, principal, Aggregate, aggregate, named=named).id
    spec = RequestSpec(
        aggregate=aggregate_id,
        labels=tuple(sorted((labels or {}).items())),
        required_traits=frozenset(flavor.required_traits or ()),
        forbidden_traits=frozenset(flavor.forbidden_traits or ()),
    )
    return spec.to_dict(), group_id
