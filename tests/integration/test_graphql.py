"""GraphQL at /v1/graphql: tenant isolation through queries, mutations and subscriptions, batched
loading, the depth and cost limits, a hypothesis-graphql fuzzing run, and the committed schema.

One server for the module (simulated compute driver: GraphQL is about the API, not the guests)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis_graphql import from_schema
from sqlalchemy import event
from websockets.sync.client import ClientConnection, connect

from tests.conftest import (
    TENANT_PASSWORD,
    Guest,
    Server,
    destroy_server,
    import_guest_image,
    in_process_app,
    make_server,
    tenant_user,
    wait_task,
)

ROOT = Path(__file__).resolve().parents[2]
NESTED = """{ tenants(first: 5) { items { id name projects { name vms { name ports { mac securityGroups
  { name } } tasks { kind state } backups { id } volumes { name } } } } } }"""


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = make_server(NOVACRON_COMPUTE_DRIVER="simulated")
    srv.start(timeout_s=90)
    try:
        yield srv
    finally:
        destroy_server(srv)


def gql(client: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    r = client.post("/v1/graphql", json={"query": query, "variables": variables or None})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@contextlib.contextmanager
def ws(server: Server, token: str) -> Iterator[ClientConnection]:
    """A graphql-transport-ws connection, initialised."""
    with connect(
        server.url.replace("http", "ws") + "/v1/graphql/ws",
        subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=10,
    ) as conn:
        conn.send(json.dumps({"type": "connection_init"}))
        assert json.loads(conn.recv(10))["type"] == "connection_ack"
        yield conn


def subscribe(conn: ClientConnection, ident: str, query: str, **variables: Any) -> None:
    payload = {"query": query, "variables": variables or None}
    conn.send(json.dumps({"id": ident, "type": "subscribe", "payload": payload}))


def test_nested_query_loads_each_relation_in_one_query(tmp_path: Path) -> None:
    """Six tenants, each with a project of two VMs with a task each, cost as many SQL queries as two
    such tenants: one per relation and level, never one per row."""
    from novacron.db.base import new_id
    from novacron.db.models import VM, LbListener, LbMember, LbPool, LoadBalancer, Task

    with in_process_app(tmp_path) as (client, password, db):
        r = client.post("/v1/tokens", json={"username": "admin", "password": password})
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        statements: list[str] = []
        event.listen(db.read_engine, "before_cursor_execute", lambda *a: statements.append(str(a[2])))

        def add_tenants(numbers: range) -> None:
            for i in numbers:
                t = client.post("/v1/tenants", json={"name": f"t{i}"}).json()
                p = client.post("/v1/projects", json={"name": "p", "tenant_id": t["id"]}).json()
                with db.session() as s:  # rows as the services write them; no guest needed to read them
                    for j in range(2):
                        vm = VM(id=new_id("vm"), project_id=p["id"], tenant_id=t["id"], name=f"v{j}",
                                vcpus=1, ram_mb=64, disk_gb=1)  # fmt: skip
                        s.add(vm)
                        s.add(Task(id=new_id("task"), tenant_id=t["id"], project_id=p["id"], kind="vm.create",
                                   resource_type="vm", resource_id=vm.id))  # fmt: skip

        def count() -> tuple[int, int]:
            statements.clear()
            r = client.post("/v1/graphql", json={"query": NESTED})
            assert r.status_code == 200 and "errors" not in r.json(), r.text
            tenants = r.json()["data"]["tenants"]["items"]
            vms = [v for t in tenants for p in t["projects"] for v in p["vms"]]
            assert all(len(v["tasks"]) == 1 for v in vms)
            return len(statements), len(vms)

        add_tenants(range(2))
        few, vms_few = count()
        add_tenants(range(2, 6))
        many, vms_many = count()
        assert (vms_few, vms_many) == (4, 8)  # the default tenant has none; five tenants on the page
        assert many == few, statements
        # BEGIN, then tenants, projects, VMs, and the VMs' ports, tasks, backups and volumes: one each
        assert few == 8, statements
        # networks → subnets, ports; security groups → rules; load balancers → listeners,
        # pools → members; routers → interfaces: one query per relation too
        nets = "{ networks { items { subnets { cidr } ports { id } } }"
        nets += " securityGroups { items { rules { id } } } loadBalancers { items { listeners { name }"
        nets += " pools { protocol members { address } } } }"
        nets += " subnets { items { cidr } } routers { items { interfaces { id } } }"
        nets += " floatingIps { items { ip } } }"
        t = client.post("/v1/tenants", json={"name": "tn"}).json()
        pid = client.post("/v1/projects", json={"name": "p", "tenant_id": t["id"]}).json()["id"]

        def add_networks(numbers: range) -> int:
            for i in numbers:
                n = client.post("/v1/networks", json={"name": f"n{i}", "project_id": pid}).json()
                sub = {"network": n["id"], "name": "s", "cidr": f"10.9.{i}.0/24"}
                sub_id = client.post("/v1/subnets", json=sub).json()["id"]
                with db.session() as s:  # rows as the service writes them: a real one needs hosts
                    lb = LoadBalancer(
                        id=new_id("lb"),
                        project_id=pid,
                        tenant_id=t["id"],
                        name=f"lb{i}",
                        vip_subnet_id=sub_id,
                        vip_network_id=n["id"],
                        vip_address="10.9.0.9",
                    )
                    s.add(lb)
                    s.flush()
                    s.add(
                        LbListener(
                            id=new_id("li"),
                            loadbalancer_id=lb.id,
                            tenant_id=t["id"],
                            name="web",
                            protocol="HTTP",
                            protocol_port=80,
                        )
                    )
                    pool = LbPool(id=new_id("pool"), loadbalancer_id=lb.id, tenant_id=t["id"],
                                  protocol="HTTP")  # fmt: skip
                    s.add(pool)
                    s.flush()
                    s.add(LbMember(id=new_id("member"), pool_id=pool.id, loadbalancer_id=lb.id,
                                   tenant_id=t["id"], address=f"10.9.{i}.20", protocol_port=80,
                                   subnet_id=sub_id))  # fmt: skip
                rt = client.post("/v1/routers", json={"name": f"r{i}", "project_id": pid}).json()
                r = client.post(f"/v1/routers/{rt['id']}/interfaces", json={"subnet": sub_id})
                assert r.status_code == 200, r.text
                fip = client.post("/v1/floating-ips", json={"network": "gqext", "project_id": pid})
                assert fip.status_code == 201, fip.text
                g = client.post("/v1/security-groups", json={"name": f"g{i}", "project_id": pid}).json()
                client.post(f"/v1/security-groups/{g['id']}/rules", json={"direction": "ingress"})
            statements.clear()
            r = client.post("/v1/graphql", json={"query": nets})
            data = r.json()["data"]
            assert "errors" not in r.json() and len(data["networks"]["items"]) == numbers.stop + 1  # + gqext
            assert all(lb["listeners"] == [{"name": "web"}] for lb in data["loadBalancers"]["items"])
            members = [m for lb in data["loadBalancers"]["items"] for p in lb["pools"] for m in p["members"]]
            assert sorted(m["address"] for m in members) == [f"10.9.{i}.20" for i in range(numbers.stop)]
            assert [len(rt["interfaces"]) for rt in data["routers"]["items"]] == [1] * numbers.stop, data
            assert len(data["floatingIps"]["items"]) == numbers.stop
            return len(statements)

        ext = client.post("/v1/networks", json={"name": "gqext", "external": True, "project_id": pid}).json()
        sub = {"network": ext["id"], "name": "ext", "cidr": "198.51.100.0/24"}
        assert client.post("/v1/subnets", json=sub).status_code == 201
        # 9 before, then pools → members, and the subnets, routers → interfaces, floating IPs roots
        assert add_networks(range(2)) == add_networks(range(2, 6)) == 14, statements
        # a user of another tenant sees none of them: lists empty, lookups null
        every = "{ loadBalancers { items { id } } networks(external: false) { items { id } }"
        every += " subnets { items { id } } routers { items { id } } floatingIps { items { id } } }"
        mine = client.post("/v1/graphql", json={"query": every}).json()["data"]
        first_of = {root: page["items"][-1]["id"] for root, page in mine.items()}
        other = client.post("/v1/tenants", json={"name": "other"}).json()
        user = {
            "username": "other-user",
            "password": TENANT_PASSWORD,
            "role": "tenant-admin",
            "tenant_id": other["id"],
        }
        assert client.post("/v1/users", json=user).status_code == 201
        login = {"username": "other-user", "password": TENANT_PASSWORD, "tenant": "other"}
        admin_auth = client.headers["Authorization"]
        client.headers["Authorization"] = (
            f"Bearer {client.post('/v1/tokens', json=login).json()['access_token']}"
        )
        theirs = client.post("/v1/graphql", json={"query": nets}).json()
        external = {"subnets": [{"cidr": "198.51.100.0/24"}], "ports": []}  # everyone's, not its ports
        assert theirs["data"] == {"networks": {"items": [external]}, "securityGroups": {"items": []},
                                  "loadBalancers": {"items": []}, "subnets": {"items": external["subnets"]},
                                  "routers": {"items": []}, "floatingIps": {"items": []}}, theirs  # fmt: skip
        lookups = " ".join(f'{root[:-1]}(id: "{ident}") {{ id }}' for root, ident in first_of.items())
        found = client.post("/v1/graphql", json={"query": f"{{ {lookups} }}"}).json()
        assert found["data"] == {root[:-1]: None for root in first_of}, found
        client.headers["Authorization"] = admin_auth


CREATE = """mutation($input: CreateVMInput!, $key: String) { createVm(input: $input, idempotencyKey: $key)
  { taskId vmId replayed vm { id name projectId } } }"""


def test_tenants_see_only_their_own_through_queries_mutations_and_subscriptions(
    server: Server, guest: Guest
) -> None:
    with server.client() as admin:
        import_guest_image(admin, guest)
        alice, alice_project = tenant_user(admin, server, "gqa", role="tenant-admin")
        bob, _bob_project = tenant_user(admin, server, "gqb", role="tenant-admin")
    bob_token = bob.headers["Authorization"].split()[1]
    with alice, bob, ws(server, bob_token) as bob_ws:
        subscribe(bob_ws, "e", "subscription { events { type tenantId resourceId } }")
        vm_input = {"name": "gql-vm", "image": "test-guest", "flavor": "tiny", "projectId": alice_project}
        first = gql(alice, CREATE, input=vm_input, key="k-1")["data"]["createVm"]
        again = gql(alice, CREATE, input=vm_input, key="k-1")["data"]["createVm"]
        assert (again["taskId"], again["vmId"], again["replayed"]) == (first["taskId"], first["vmId"], True)
        other = gql(alice, CREATE, input={**vm_input, "name": "gql-other"}, key="k-1")
        assert other["errors"][0]["extensions"]["status"] == 422, other
        assert first["vm"]["name"] == "gql-vm" and not first["replayed"]
        bad = gql(alice, CREATE, input={**vm_input, "name": "Not_A_Name"})
        [problem] = bad["errors"][0]["extensions"]["errors"]
        assert problem["field"] == "name" and "lowercase letters" in problem["reason"], bad
        assert wait_task(alice, first["taskId"])["state"] == "succeeded"
        vm_id = first["vmId"]
        # the mutation is audited under its name
        audit = alice.get("/v1/audit", params={"action": "graphql.createVm"}).json()["items"]
        assert any(a["resource_id"] == vm_id for a in audit), audit
        # alice's own view, across relations
        mine = gql(alice, NESTED)
        assert "errors" not in mine, mine
        # reads sent as POSTs are not changes: none audited
        assert alice.get("/v1/audit", params={"action": "graphql.create"}).json()["items"] == []
        [tenant] = mine["data"]["tenants"]["items"]
        vms = [v for p in tenant["projects"] for v in p["vms"]]
        assert [v["name"] for v in vms] == ["gql-vm"] and vms[0]["tasks"][0]["kind"] == "vm.create"
        # bob: alice's tenant, project, VM and task are simply absent
        theirs = gql(bob, NESTED)["data"]["tenants"]["items"]
        assert [t["name"] for t in theirs] == ["gqb"] and all(p["vms"] == [] for p in theirs[0]["projects"])
        lookups = f"""{{ vm(id: "{vm_id}") {{ id }} task(id: "{first["taskId"]}") {{ id }}
          project(id: "{alice_project}") {{ id }} tenant(id: "gqa") {{ id }} vms {{ items {{ id }} }}
          tasks {{ items {{ resourceId }} }} volumes {{ items {{ id }} }} backups {{ items {{ id }} }}
          events(tail: true, limit: 1000) {{ tenantId resourceId }} }}"""
        seen = gql(bob, lookups)
        assert "errors" not in seen, seen
        data = seen["data"]
        assert (
            data["vm"] is None and data["task"] is None and data["project"] is None and data["tenant"] is None
        )
        assert vm_id not in json.dumps(data) and first["taskId"] not in json.dumps(data)
        refused = gql(bob, f'mutation {{ stopVm(id: "{vm_id}") {{ taskId }} }}')
        assert refused["errors"][0]["extensions"]["status"] == 404 and refused["data"] == {"stopVm": None}
        # alice follows a stop's progress to the end; bob's subscription never saw any of it
        with ws(server, alice.headers["Authorization"].split()[1]) as alice_ws:
            stop = gql(alice, f'mutation {{ stopVm(id: "{vm_id}", force: true) {{ taskId }} }}')
            task_id = stop["data"]["stopVm"]["taskId"]
            progress = "subscription($id: ID!) { taskProgress(id: $id) { id state progress } }"
            subscribe(alice_ws, "t", progress, id=task_id)
            states = []
            while (m := json.loads(alice_ws.recv(60)))["type"] == "next":
                states.append(m["payload"]["data"]["taskProgress"])
            assert m == {"type": "complete", "id": "t"} and states[-1]["state"] == "succeeded", states
            subscribe(bob_ws, "t", progress, id=task_id)
            refused_ws = json.loads(bob_ws.recv(10))
            assert refused_ws["type"] == "error" and refused_ws["payload"][0]["extensions"]["status"] == 404
        # volumes: create and delete, bob's event stream gets his own only
        vol = gql(bob, 'mutation { createVolume(input: {name: "gqv", sizeGb: 1}) { taskId volumeId } }')
        assert "errors" not in vol, vol
        assert wait_task(bob, vol["data"]["createVolume"]["taskId"])["state"] == "succeeded"
        volume_id = vol["data"]["createVolume"]["volumeId"]
        # two mutations in one operation: the refused one leaves nothing behind, the other stands
        both = gql(
            bob,
            'mutation { ok: createVolume(input: {name: "gqv2", sizeGb: 1}) { volumeId taskId } '
            'bad: createVm(input: {name: "gqb-vm", flavor: "no-such-flavor"}) { vmId } }',
        )
        assert both["data"]["bad"] is None and both["data"]["ok"]["volumeId"], both
        assert both["errors"][0]["path"] == ["bad"] and both["errors"][0]["extensions"]["status"] == 422
        assert gql(bob, '{ vms(name: "gqb-vm") { items { id } } }')["data"]["vms"]["items"] == []
        assert wait_task(bob, both["data"]["ok"]["taskId"])["state"] == "succeeded"
        deleted = gql(bob, f'mutation {{ deleteVolume(id: "{volume_id}") {{ volumeId }} }}')
        assert "errors" not in deleted, deleted
        seen_events: list[dict[str, Any]] = []
        while not any(e["resourceId"] == volume_id for e in seen_events):
            m = json.loads(bob_ws.recv(30))
            assert m["type"] == "next" and m["id"] == "e", m
            seen_events.append(m["payload"]["data"]["events"])
        assert all(e["tenantId"] == theirs[0]["id"] and vm_id not in json.dumps(e) for e in seen_events)
        vm_update_is_guarded_by_its_etag(alice, bob, vm_id)
        gone = gql(alice, f'mutation {{ deleteVm(id: "{vm_id}", idempotencyKey: "d-1") {{ taskId }} }}')
        assert wait_task(alice, gone["data"]["deleteVm"]["taskId"])["state"] == "succeeded"
        networks_and_groups_are_the_callers_own(alice, bob)


UPDATE = """mutation($id: ID!, $input: UpdateVMInput!, $tag: String, $key: String) {
  updateVm(id: $id, input: $input, ifMatch: $tag, idempotencyKey: $key)
  { etag replayed vm { labels etag } } }"""


def vm_update_is_guarded_by_its_etag(alice: httpx.Client, bob: httpx.Client, vm_id: str) -> None:
    """updateVm: REST's ETag as ifMatch, a stale one refused (412, nothing changed), a replay by key,
    a bad value named; bob cannot touch it."""
    tag = gql(alice, f'{{ vm(id: "{vm_id}") {{ etag }} }}')["data"]["vm"]["etag"]
    assert alice.get(f"/v1/vms/{vm_id}").headers["etag"] == tag
    done = gql(alice, UPDATE, id=vm_id, input={"labels": {"tier": "web"}}, tag=tag, key="u-1")["data"]
    updated = done["updateVm"]
    assert updated["vm"] == {"labels": {"tier": "web"}, "etag": updated["etag"]} and updated["etag"] != tag
    again = gql(alice, UPDATE, id=vm_id, input={"labels": {"tier": "web"}}, tag=tag, key="u-1")["data"]
    assert (again["updateVm"]["etag"], again["updateVm"]["replayed"]) == (updated["etag"], True)
    stale = gql(alice, UPDATE, id=vm_id, input={"labels": {"tier": "db"}}, tag=tag)
    assert stale["data"] == {"updateVm": None} and stale["errors"][0]["extensions"]["status"] == 412, stale
    assert alice.get(f"/v1/vms/{vm_id}").json()["labels"] == {"tier": "web"}
    r = alice.patch(f"/v1/vms/{vm_id}", json={"labels": {}}, headers={"If-Match": tag})
    assert r.status_code == 412, r.text  # REST refuses the same stale tag
    bad = gql(alice, UPDATE, id=vm_id, input={"vcpus": 0}, tag=updated["etag"])
    assert bad["errors"][0]["extensions"]["errors"][0]["field"] == "vcpus", bad
    theirs = gql(bob, UPDATE, id=vm_id, input={"labels": {"x": "y"}})
    assert theirs["data"] == {"updateVm": None} and theirs["errors"][0]["extensions"]["status"] == 404
    audit = alice.get("/v1/audit", params={"action": "graphql.updateVm"}).json()["items"]
    assert any(a["resource_id"] == vm_id for a in audit), audit


NET = """mutation($input: CreateNetworkInput!, $key: String) {
  createNetwork(input: $input, idempotencyKey: $key) { networkId replayed network { name } } }"""
RULE = """mutation($g: ID!, $input: RuleInput!, $key: String) {
  addSecurityGroupRule(groupId: $g, input: $input, idempotencyKey: $key)
  { ruleId replayed group { name rules { id portMin } } } }"""
MINE = """{ networks { items { id subnets { cidr } ports { id } } }
  securityGroups { items { id rules { id } } }
  images { items { name } } flavors { items { name } } flavor(id: "tiny") { name } }"""


SUBNET = """mutation($input: CreateSubnetInput!, $key: String) {
  createSubnet(input: $input, idempotencyKey: $key) { subnetId replayed subnet { cidr networkId } } }"""


def subnets_and_routers_are_the_callers_own(alice: httpx.Client, bob: httpx.Client, net_id: str) -> str:
    """createSubnet replayed by key, a bad CIDR named, deleteSubnet; a router with an interface on
    the subnet; bob sees neither, nor deletes the subnet. The subnet's id."""
    made = {"network": net_id, "name": "gqs", "cidr": "10.77.0.0/24"}
    first = gql(alice, SUBNET, input=made, key="s-1")["data"]["createSubnet"]
    again = gql(alice, SUBNET, input=made, key="s-1")["data"]["createSubnet"]
    assert first["subnet"] == {"cidr": "10.77.0.0/24", "networkId": net_id} and not first["replayed"]
    assert (again["subnetId"], again["replayed"]) == (first["subnetId"], True)
    bad = gql(alice, SUBNET, input={**made, "name": "gqs-bad", "cidr": "10.78.0.0/99"})
    assert bad["data"] == {"createSubnet": None} and bad["errors"][0]["extensions"]["status"] == 422, bad
    spare = gql(alice, SUBNET, input={**made, "name": "gqs2", "cidr": "10.79.0.0/24"})
    spare_id = spare["data"]["createSubnet"]["subnetId"]
    router = alice.post("/v1/routers", json={"name": "gqr"}).json()
    r = alice.post(f"/v1/routers/{router['id']}/interfaces", json={"subnet": first["subnetId"]})
    assert r.status_code == 200, r.text
    mine = gql(alice, "{ subnets { items { id } } routers { items { id interfaces { networkId } } } }")
    assert {s["id"] for s in mine["data"]["subnets"]["items"]} == {first["subnetId"], spare_id}, mine
    assert mine["data"]["routers"]["items"] == [{"id": router["id"], "interfaces": [{"networkId": net_id}]}]
    lookups = f"""{{ subnet(id: "{first["subnetId"]}") {{ id }} router(id: "{router["id"]}") {{ id }}
      subnets(first: 200) {{ items {{ id }} }} routers(first: 200) {{ items {{ id }} }}
      floatingIps(first: 200) {{ items {{ id }} }} }}"""
    theirs = gql(bob, lookups)
    assert "errors" not in theirs and theirs["data"]["subnet"] is None and theirs["data"]["router"] is None
    assert first["subnetId"] not in json.dumps(theirs) and router["id"] not in json.dumps(theirs)
    refused = gql(bob, f'mutation {{ deleteSubnet(id: "{spare_id}") {{ subnetId }} }}')
    assert refused["errors"][0]["extensions"]["status"] == 404, refused
    drop = f'mutation {{ deleteSubnet(id: "{spare_id}", idempotencyKey: "sd")'
    drop += " { subnetId subnet { id } } }"
    assert gql(alice, drop)["data"]["deleteSubnet"] == {"subnetId": spare_id, "subnet": None}
    assert gql(alice, drop)["errors"][0]["extensions"]["status"] == 404  # gone: REST's 404, not a replay
    audit = alice.get("/v1/audit", params={"action": "graphql.createSubnet"}).json()["items"]
    assert any(a["resource_id"] == first["subnetId"] for a in audit), audit
    return str(first["subnetId"])


def networks_and_groups_are_the_callers_own(alice: httpx.Client, bob: httpx.Client) -> None:
    """The network and security-group mutations (replayed by key, refused naming the field), and
    the new roots and relations: bob sees none of alice's networks, subnets, groups or rules."""
    first = gql(alice, NET, input={"name": "gqnet"}, key="n-1")["data"]["createNetwork"]
    again = gql(alice, NET, input={"name": "gqnet"}, key="n-1")["data"]["createNetwork"]
    assert (again["networkId"], again["replayed"], first["replayed"]) == (first["networkId"], True, False)
    assert first["network"]["name"] == "gqnet"
    net_id = first["networkId"]
    bad = gql(alice, NET, input={"name": "not a name"})
    assert bad["data"]["createNetwork"] is None, bad
    assert bad["errors"][0]["extensions"]["errors"][0]["field"] == "name", bad
    subnet_id = subnets_and_routers_are_the_callers_own(alice, bob, net_id)
    made = gql(alice, 'mutation { createSecurityGroup(input: {name: "gqsg"}) { groupId } }')
    group_id = made["data"]["createSecurityGroup"]["groupId"]
    rule = {"direction": "ingress", "protocol": "tcp", "portMin": 22, "portMax": 22}
    added = gql(alice, RULE, g=group_id, input=rule, key="r-1")["data"]["addSecurityGroupRule"]
    replay = gql(alice, RULE, g=group_id, input=rule, key="r-1")["data"]["addSecurityGroupRule"]
    assert (replay["ruleId"], replay["replayed"]) == (added["ruleId"], True)
    assert [r["id"] for r in replay["group"]["rules"]] == [added["ruleId"]]
    wrong = gql(alice, RULE, g=group_id, input={**rule, "direction": "sideways"})
    assert wrong["errors"][0]["extensions"]["errors"][0]["field"] == "direction", wrong
    mine = gql(alice, MINE)
    assert "errors" not in mine, mine
    [net] = [n for n in mine["data"]["networks"]["items"] if n["id"] == net_id]
    assert net["subnets"] == [{"cidr": "10.77.0.0/24"}] and len(net["ports"]) == 1  # the router's leg
    [group] = [g for g in mine["data"]["securityGroups"]["items"] if g["id"] == group_id]
    assert group["rules"] == [{"id": added["ruleId"]}]
    assert "test-guest" in json.dumps(mine["data"]["images"]) and mine["data"]["flavor"] == {"name": "tiny"}
    lookups = f"""{{ network(id: "{net_id}") {{ id }} securityGroup(id: "{group_id}") {{ id }}
      networks(first: 200) {{ items {{ id tenantId subnets {{ cidr }} ports {{ id }} }} }}
      securityGroups(first: 200) {{ items {{ id tenantId rules {{ id }} }} }}
      images {{ items {{ projectId }} }} }}"""
    theirs = gql(bob, lookups)
    assert "errors" not in theirs, theirs
    data = theirs["data"]
    assert data["network"] is None and data["securityGroup"] is None
    seen = json.dumps(data)
    assert net_id not in seen and group_id not in seen and added["ruleId"] not in seen
    assert "10.77.0.0/24" not in seen and subnet_id not in seen
    refused = gql(bob, f'mutation {{ deleteNetwork(id: "{net_id}") {{ networkId }} }}')
    assert refused["errors"][0]["extensions"]["status"] == 404 and refused["data"] == {"deleteNetwork": None}
    rule_id = added["ruleId"]
    drop_rule = f'deleteSecurityGroupRule(groupId: "{group_id}", ruleId: "{rule_id}")'
    refused = gql(bob, f"mutation {{ {drop_rule} {{ ruleId }} }}")
    assert refused["errors"][0]["extensions"]["status"] == 404, refused
    # each mutation sees what the ones before it did (the loaders forget between mutations)
    cleanup = f"""mutation {{ a: {drop_rule} {{ group {{ rules {{ id }} }} }}
      b: deleteSecurityGroup(id: "{group_id}") {{ group {{ id }} }} }}"""
    done = gql(alice, cleanup)
    assert "errors" not in done, done
    assert done["data"]["a"]["group"]["rules"] == [] and done["data"]["b"]["group"] is None
    audit = alice.get("/v1/audit", params={"action": "graphql.createNetwork"}).json()["items"]
    assert any(a["resource_id"] == net_id for a in audit), audit


def test_depth_cost_and_authentication_are_refused_clearly(server: Server) -> None:
    with server.client() as admin:
        costly = gql(
            admin,
            "{ tenants(first: 200) { items { projects { vms { ports { securityGroups { name } } } } } } }",
        )
        assert costly["data"] is None and costly["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
        assert "first:" in costly["errors"][0]["message"]
        nested = '{ vm(id: "x") { ' + "ports { securityGroups { name } } " + "} }"
        assert "errors" not in gql(admin, nested)
        cycle = "vms { project { " * 5
        too_deep = gql(
            admin, "{ vms(first: 1) { items { project { " + cycle + "name" + " } }" * 5 + " } } } }"
        )
        assert too_deep["data"] is None and too_deep["errors"][0]["extensions"]["code"] == "QUERY_TOO_DEEP"
        assert "at most 10" in too_deep["errors"][0]["message"]
        # each fragment spreads the one before twice: 2^39 VMs' projects, refused at once, not walked
        spread = "fragment F{0} on VM {{ ...F{1} a{0}: project {{ id }} ...F{1} }}"
        chain = [spread.format(i, i - 1) for i in range(1, 40)]
        bomb = "{ vms(first: 1) { items { ...F39 } } }\nfragment F0 on VM { id }\n" + "\n".join(chain)
        started = time.monotonic()
        refused = gql(admin, bomb)
        assert refused["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
        assert time.monotonic() - started < 5
        intro = gql(
            admin,
            "{ __schema { queryType { name } types { name fields { name type { name ofType { name "
            "ofType { name ofType { name } } } } } } } }",
        )
        assert intro["data"]["__schema"]["queryType"]["name"] == "Query"
        over_post = gql(admin, "subscription { events { type } }")
        assert over_post["data"] is None and "/v1/graphql/ws" in over_post["errors"][0]["message"]
    r = httpx.post(f"{server.url}/v1/graphql", json={"query": "{ vms { items { id } } }"})
    assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
    with pytest.raises(Exception, match="4401"), ws(server, "not-a-token") as conn:
        conn.recv(5)
    # a browser cannot send the header: a single-use ticket for this path instead
    with server.client() as admin:
        ticket = admin.post("/v1/tickets", json={"path": "/v1/graphql/ws"}).json()["ticket"]
    url = server.url.replace("http", "ws") + f"/v1/graphql/ws?ticket={ticket}"
    with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=10) as conn:  # type: ignore[list-item]
        conn.send(json.dumps({"type": "connection_init"}))
        assert json.loads(conn.recv(10))["type"] == "connection_ack"
        subscribe(conn, "1", 'subscription { taskProgress(id: "nope") { id } }')
        refused = json.loads(conn.recv(10))
        assert refused["type"] == "error" and refused["payload"][0]["extensions"]["status"] == 404


def test_fuzzing_the_schema_finds_no_server_error(server: Server) -> None:
    """hypothesis-graphql's queries and mutations (valid against the schema, any argument values)."""
    from novacron.api.graphql.schema import schema

    text = schema.as_str()
    mutations: list[str] = []
    with server.client() as admin:

        @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
        @given(query=from_schema(text))
        def run(query: str) -> None:
            r = admin.post("/v1/graphql", json={"query": query})
            assert r.status_code == 200, (query, r.text)
            for error in r.json().get("errors", []):
                assert error.get("extensions", {}).get("code") != "INTERNAL_SERVER_ERROR", (query, error)
            if query.lstrip().startswith("mutation"):
                mutations.append(query)

        run()
    assert mutations, "no mutation was generated"
    assert "GraphQL resolver failed" not in server.log_path.read_text()


def test_committed_schema_is_what_the_code_builds() -> None:
    r = subprocess.run(
        [sys.executable, "scripts/graphql_schema.py", "--check"], cwd=ROOT, capture_output=True
    )
    assert r.returncode == 0, r.stderr.decode()


def test_the_openapi_operation_answers_as_declared(server: Server) -> None:
    """Schemathesis over POST /v1/graphql alone (the suite's run covers it too, among 200 paths)."""
    from tests.integration.test_api_fuzz import run, st_command

    command = [
        *st_command(server.url, server.token(), "examples,coverage,fuzzing"),
        "--include-path",
        "/v1/graphql",
    ]
    result = run(command)
    assert result.returncode == 0 and "Server error" not in result.stdout, result.stdout[-4000:]
