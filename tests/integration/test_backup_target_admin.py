"""Backup targets for a new admin (issue 17, item 7): the way to make the first one, rename and
reconfigure one (credentials stay write-only), and delete one, refused while it is in use.

In process (no agent): a backup with no target is refused before any VM is looked at. The refusal
of a target that holds backups, and ``force``, are in ``test_backups.py`` (they need real backups).
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from novacron.backup.service import NO_TARGET

NAME_RULE = "use 1-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit"


def _local(client: TestClient, name: str, path: Path) -> dict[str, str]:
    r = client.post("/v1/backup-targets", json={"name": name, "type": "local", "config": {"path": str(path)}})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_no_target_says_how_to_make_one(in_process_admin: TestClient) -> None:
    r = in_process_admin.post("/v1/backups", json={"vm": "nothing-here"})
    assert r.status_code == 422, r.text
    assert r.json()["errors"] == [{"field": "body.target", "reason": NO_TARGET}]
    assert NO_TARGET.startswith(
        "there is no backup target yet: create one with `novacron backup target create NAME --kind local "
        "--set path="
    )


def test_rename_reconfigure_and_delete(in_process_admin: TestClient, tmp_path: Path) -> None:
    c = in_process_admin
    target = _local(c, "first", tmp_path / "first")
    other = _local(c, "second", tmp_path / "second")
    r = c.patch(f"/v1/backup-targets/{target['id']}", json={"name": "second"})
    assert r.status_code == 409 and r.json()["errors"][0]["field"] == "body.name"
    r = c.patch(f"/v1/backup-targets/{target['id']}", json={"name": "Main!"})
    assert r.json()["errors"] == [{"field": "body.name", "reason": NAME_RULE}]
    etag = c.get(f"/v1/backup-targets/{target['id']}").headers["etag"]
    r = c.patch(f"/v1/backup-targets/{target['id']}", json={"name": "main"}, headers={"If-Match": etag})
    assert r.status_code == 200 and r.json()["name"] == "main" and r.json()["id"] == target["id"]
    assert c.get("/v1/backup-targets/main").json()["id"] == target["id"]
    # a stale ETag is refused; a target's path cannot move under its backups
    assert c.delete("/v1/backup-targets/main", headers={"If-Match": etag}).status_code == 412
    r = c.patch("/v1/backup-targets/main", json={"config": {"path": str(tmp_path / "moved")}})
    assert r.status_code == 422 and r.json()["detail"] == "config.path: a local target's path cannot change"

    # a schedule writing to it: refused, force or not
    project = c.get("/v1/projects", params={"name": "default"}).json()["items"][0]["id"]
    r = c.post("/v1/backup-policies", json={"name": "nightly", "project_id": project, "target": "main"})
    assert r.status_code == 201, r.text
    policy = r.json()["id"]
    for query in ("", "?force=true"):
        r = c.delete(f"/v1/backup-targets/main{query}")
        assert r.status_code == 409, r.text
        assert r.json()["errors"] == [
            {"field": "path.target_id", "reason": "backup schedules (nightly) write to it: delete them first"}
        ]
    assert c.delete(f"/v1/backup-policies/{policy}").status_code == 204
    assert c.delete("/v1/backup-targets/main").status_code == 204
    assert c.get("/v1/backup-targets/main").status_code == 404
    assert [t["name"] for t in c.get("/v1/backup-targets").json()["items"]] == [other["name"]]
    # the directory is left to the administrator
    assert (tmp_path / "first").is_dir()
