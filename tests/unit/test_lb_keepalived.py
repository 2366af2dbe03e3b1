"""An ACTIVE_STANDBY load balancer's desired state: its amphorae validated, its VRRP router id
derived and kept unique on a network, the JSON round trip kept, and each amphora's
``keepalived.conf`` rendered so that keepalived itself (``keepalived -t``) accepts it."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from novacron.errors import Conflict, InvalidInput
from novacron.lbaas.keepalived_config import VRRPPaths, check_script, notify_script, render
from novacron.lbaas.model import (
    AmphoraSpec,
    ListenerSpec,
    LoadBalancerSpec,
    MemberSpec,
    PoolSpec,
    assign_vrrp_id,
    check_unique_vrrp_ids,
    derived_vrrp_id,
)
from novacron.network.wire import from_dict, to_dict
from tests.conftest import require

AMPHORAE = (AmphoraSpec("amp-a", "MASTER", "10.0.0.11"), AmphoraSpec("amp-b", "BACKUP", "10.0.0.12"))


def ha_spec(lb_id: str = "lb-1", **kw: Any) -> LoadBalancerSpec:
    return LoadBalancerSpec(
        lb_id,
        "10.0.0.10",
        (ListenerSpec("web", "HTTP", 80, default_pool_id="pool"),),
        (PoolSpec("pool", members=(MemberSpec("m1", "10.0.0.21", 80),)),),
        **{"topology": "ACTIVE_STANDBY", "amphorae": AMPHORAE, **kw},
    )


def test_active_standby_round_trips_through_json_and_single_stays_the_default() -> None:
    spec = ha_spec(vrrp_id=7, vrrp_advert_int=0.3)
    assert from_dict(LoadBalancerSpec, json.loads(json.dumps(to_dict(spec)))) == spec
    single = LoadBalancerSpec("lb-2", "10.0.0.10")
    assert single.topology == "SINGLE" and single.amphorae == ()
    assert from_dict(LoadBalancerSpec, json.loads(json.dumps(to_dict(single)))) == single


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amphorae": AMPHORAE[:1]}, "amphorae"),
        ({"amphorae": (AMPHORAE[0], dataclasses.replace(AMPHORAE[1], role="MASTER"))}, "amphorae"),
        ({"amphorae": (AMPHORAE[0], dataclasses.replace(AMPHORAE[1], vrrp_ip="10.0.0.11"))}, "vrrp_ip"),
        ({"amphorae": (AMPHORAE[0], dataclasses.replace(AMPHORAE[1], vrrp_ip="10.0.0.10"))}, "vrrp_ip"),
        ({"amphorae": (AMPHORAE[0], dataclasses.replace(AMPHORAE[1], vrrp_ip="fd00::2"))}, "vrrp_ip"),
        ({"amphorae": (AMPHORAE[0], dataclasses.replace(AMPHORAE[1], id="amp-a"))}, "amphorae"),
        ({"vrrp_id": 256}, "vrrp_id"),
        ({"vrrp_advert_int": 0.01}, "vrrp_advert_int"),
        ({"topology": "SINGLE"}, "amphorae"),
    ],
)
def test_inconsistent_active_standby_is_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        ha_spec(**changes)
    assert err.value.fields[0].field == field


def test_amphora_interface_cannot_carry_configuration() -> None:
    with pytest.raises(InvalidInput, match="vrrp_interface"):
        AmphoraSpec("amp", "MASTER", "10.0.0.11", vrrp_interface="eth0\n}")


def test_router_id_is_derived_from_the_id_and_unique_on_a_network() -> None:
    derived = derived_vrrp_id("lb-1")
    assert 1 <= derived <= 255 and derived == derived_vrrp_id("lb-1") == ha_spec().router_id
    assert assign_vrrp_id("lb-1", set()) == derived
    assert assign_vrrp_id("lb-1", {derived}) == derived % 255 + 1
    with pytest.raises(Conflict):
        assign_vrrp_id("lb-1", set(range(1, 256)))
    check_unique_vrrp_ids([ha_spec("lb-1"), ha_spec("lb-2", vrrp_id=derived % 255 + 1)])
    with pytest.raises(Conflict, match="lb-1 and lb-2"):
        check_unique_vrrp_ids([ha_spec("lb-1"), ha_spec("lb-2", vrrp_id=derived)])


def test_each_amphora_gets_its_role_peer_and_the_vip(tmp_path: Path) -> None:
    paths = VRRPPaths(tmp_path / "vrrp", tmp_path / "admin.sock")
    spec = ha_spec(vrrp_id=42)
    master, backup = render(spec, "amp-a", paths), render(spec, "amp-b", paths)
    assert "priority 100" in master and "priority 90" in backup
    for config in (master, backup):
        # both start BACKUP: keepalived's nopreempt needs it; the priority decides the first election
        assert "state BACKUP" in config and "nopreempt" in config
        assert "virtual_router_id 42" in config and "10.0.0.10/32 dev eth0" in config
    assert "unicast_src_ip 10.0.0.11" in master and "unicast_peer {\n        10.0.0.12\n" in master
    assert "unicast_src_ip 10.0.0.12" in backup and "unicast_peer {\n        10.0.0.11\n" in backup
    assert f"unix-connect:{tmp_path / 'admin.sock'}" in check_script(paths)
    assert f"'{paths.state_file}'" in notify_script(paths)
    with pytest.raises(ValueError):
        render(LoadBalancerSpec("lb-3", "10.0.0.10"), "amp-a", paths)
    with pytest.raises(ValueError):
        VRRPPaths(tmp_path / "a b", tmp_path / "admin.sock")


def test_keepalived_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    require(shutil.which("keepalived") is not None, "needs keepalived (scripts/setup.sh installs it)")
    paths = VRRPPaths(tmp_path, tmp_path / "admin.sock")
    for amphora in ("amp-a", "amp-b"):
        paths.config.write_text(render(ha_spec(), amphora, paths))
        for script in (paths.check_script, paths.notify_script):
            script.write_text("#!/bin/sh\n")
            script.chmod(0o700)
        proc = subprocess.run(
            ["keepalived", "-t", "-f", str(paths.config)], capture_output=True, text=True, timeout=30
        )
        assert proc.returncode == 0, proc.stderr
