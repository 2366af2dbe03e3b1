"""GraphQL mutations of networks and security groups: the REST routes' models and service calls.

``createNetwork``/``deleteNetwork`` (``POST``/``DELETE /v1/networks``), ``createSecurityGroup``/
``deleteSecurityGroup`` and ``addSecurityGroupRule``/``deleteSecurityGroupRule``
(``/v1/security-groups``, ``.../rules``): ``network:write``, the input validated by the REST model,
an ``idempotencyKey`` honoured, a savepoint each, named in the audit record (``mutations.keyed``).
"""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON

from novacron.api.graphql.context import Info
from novacron.api.graphql.mutations import Mutation, _dump, _valid, keyed
from novacron.api.graphql.network import NetworkNode
from novacron.api.graphql.types import SecurityGroupNode
from novacron.api.routers import networks as networks_api
from novacron.api.routers import security_groups as groups_api
from novacron.network.networks import NetworkService, NewNetwork
from novacron.network.secgroups import SecurityGroupService


@strawberry.type(description="a network created or deleted")
class NetworkDone:
    network_id: strawberry.ID
    replayed: bool

    @strawberry.field(description="the network as it is now (null once deleted)")
    async def network(self, info: Info) -> NetworkNode | None:
        found = await info.context.load.network.load(str(self.network_id))
        return NetworkNode.of(found) if found else None


@strawberry.type(description="a security group (or one of its rules) created or deleted")
class SecurityGroupDone:
    group_id: strawberry.ID
    rule_id: strawberry.ID | None
    replayed: bool

    @strawberry.field(description="the group as it is now (null once deleted)")
    async def group(self, info: Info) -> SecurityGroupNode | None:
        found = await info.context.load.security_group.load(str(self.group_id))
        return SecurityGroupNode.of(found) if found else None


@strawberry.input(description="a network to create: the body of POST /v1/networks")
class CreateNetworkInput:
    name: str
    project_id: str | None = None
    mtu: int = 1450
    external: bool = False
    physical_interface: str | None = None
    shared: bool = False


@strawberry.input(description="a rule: the body of POST /v1/security-groups/{id}/rules")
class RuleInput:
    direction: str
    ethertype: str = "IPv4"
    protocol: str | None = None
    port_min: int | None = None
    port_max: int | None = None
    remote_cidr: str | None = None
    remote_group: str | None = None
    remote_labels: JSON | None = None
    sni_allow: list[str] | None = None
    action: str = "allow"


@strawberry.input(description="a security group to create: the body of POST /v1/security-groups")
class CreateSecurityGroupInput:
    name: str
    description: str = ""
    project_id: str | None = None
    selector: JSON | None = None
    rules: list[RuleInput] | None = None


@strawberry.type(name="Mutation")
class Mutations(Mutation):
    """The VM and volume mutations (``mutations.py``), networks and security groups."""

    @strawberry.mutation(description="POST /v1/networks")
    def create_network(
        self, info: Info, input: CreateNetworkInput, idempotency_key: str | None = None
    ) -> NetworkDone | None:
        c = info.context
        c.require("network:write")
        body = _valid(networks_api.NetworkCreate, _dump(input))

        def run() -> dict[str, Any]:
            network = NetworkService(c.db, c.principal, c.ctx).create(NewNetwork(**body.model_dump()))
            return {"network_id": network.id}

        return NetworkDone(**keyed(info, "createNetwork", idempotency_key, body, run))

    @strawberry.mutation(description="DELETE /v1/networks/{id} (its owner only)")
    def delete_network(
        self, info: Info, id: strawberry.ID, idempotency_key: str | None = None
    ) -> NetworkDone | None:
        c = info.context
        c.require("network:write")
        service = NetworkService(c.db, c.principal, c.ctx)
        network = service.get_owned(str(id))

        def run() -> dict[str, Any]:
            service.delete(network)
            return {"network_id": network.id}

        return NetworkDone(**keyed(info, "deleteNetwork", idempotency_key, {"delete": network.id}, run))

    @strawberry.mutation(description="POST /v1/security-groups")
    def create_security_group(
        self, info: Info, input: CreateSecurityGroupInput, idempotency_key: str | None = None
    ) -> SecurityGroupDone | None:
        c = info.context
        c.require("network:write")
        body = _valid(groups_api.GroupCreate, _dump(input))

        def run() -> dict[str, Any]:
            group = SecurityGroupService(c.db, c.principal, c.ctx).create(body.spec())
            return {"group_id": group.id, "rule_id": None}

        return SecurityGroupDone(**keyed(info, "createSecurityGroup", idempotency_key, body, run))

    @strawberry.mutation(description="DELETE /v1/security-groups/{id}")
    def delete_security_group(
        self, info: Info, id: strawberry.ID, idempotency_key: str | None = None
    ) -> SecurityGroupDone | None:
        c = info.context
        c.require("network:write")
        service = SecurityGroupService(c.db, c.principal, c.ctx)
        group = service.get(str(id))

        def run() -> dict[str, Any]:
            service.delete(group)
            return {"group_id": group.id, "rule_id": None}

        request = {"delete": group.id}
        return SecurityGroupDone(**keyed(info, "deleteSecurityGroup", idempotency_key, request, run))

    @strawberry.mutation(description="POST /v1/security-groups/{id}/rules")
    def add_security_group_rule(
        self, info: Info, group_id: strawberry.ID, input: RuleInput, idempotency_key: str | None = None
    ) -> SecurityGroupDone | None:
        c = info.context
        c.require("network:write")
        service = SecurityGroupService(c.db, c.principal, c.ctx)
        group = service.get(str(group_id))  # an unknown group is a 404 before any replay
        body = _valid(groups_api.RuleIn, _dump(input))

        def run() -> dict[str, Any]:
            return {"group_id": group.id, "rule_id": service.add_rule(group, body.spec()).id}

        request = {"group": group.id, **body.model_dump(mode="json")}
        return SecurityGroupDone(**keyed(info, "addSecurityGroupRule", idempotency_key, request, run))

    @strawberry.mutation(description="DELETE /v1/security-groups/{id}/rules/{ruleId}")
    def delete_security_group_rule(
        self, info: Info, group_id: strawberry.ID, rule_id: strawberry.ID, idempotency_key: str | None = None
    ) -> SecurityGroupDone | None:
        c = info.context
        c.require("network:write")
        service = SecurityGroupService(c.db, c.principal, c.ctx)
        group = service.get(str(group_id))

        def run() -> dict[str, Any]:
            service.delete_rule(group.id, str(rule_id))
            return {"group_id": group.id, "rule_id": str(rule_id)}

        request = {"group": group.id, "delete": str(rule_id)}
        return SecurityGroupDone(**keyed(info, "deleteSecurityGroupRule", idempotency_key, request, run))
