"""KEK rotation retires only the KEKs no stored value names any more.

A value sealed while a rotation runs (a request that wrapped its data key just before the new KEK
existed, or another replica) is committed after the re-wrap read the table: the rotation used to
retire the old KEK anyway ("no errors"), deleting the only key that opened that value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from novacron.config import Settings
from novacron.db.base import Database
from novacron.db.migrate import upgrade
from novacron.db.models import SigningKey
from novacron.identity import sealing
from novacron.identity.encryption import encryption_for
from novacron.identity.keys import generate_key_pair, private_pem_aad


def test_a_value_sealed_during_a_rotation_keeps_its_kek(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(state_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/novacron.db")
    db = Database(settings.database_url)
    upgrade(db)
    enc = encryption_for(settings)
    old = enc.keys.current_id
    private_pem, public_pem = generate_key_pair()
    # wrapped under the old KEK by a request in flight when the rotation starts
    late = enc.seal_text(private_pem, private_pem_aad("late"))
    rewrap = sealing.rewrap_rows

    def rewrap_then_commit_the_late_row(db: Database, enc: Any) -> int:
        done = rewrap(db, enc)
        with db.session() as s:  # that request commits after the re-wrap read the table
            s.add(SigningKey(kid="late", alg="ES256", private_pem=late, public_pem=public_pem, active=False))
        return done

    monkeypatch.setattr(sealing, "rewrap_rows", rewrap_then_commit_the_late_row)
    report = sealing.rotate(settings, db)
    assert old in report.kept and old not in report.retired
    with db.read_session() as s:
        stored = s.get(SigningKey, "late")
        assert stored is not None
        assert enc.open_text(stored.private_pem, private_pem_aad("late")) == private_pem

    monkeypatch.setattr(sealing, "rewrap_rows", rewrap)
    again = sealing.rotate(settings, db)  # the next rotation re-wraps it, then retires the old KEK
    assert old in again.retired and not (tmp_path / "kek" / f"{old}.kek").exists()
    with db.read_session() as s:
        stored = s.get(SigningKey, "late")
        assert stored is not None and enc.kek_of(stored.private_pem) == again.new_kek
        assert enc.open_text(stored.private_pem, private_pem_aad("late")) == private_pem


def test_webhook_urls_stored_in_clear_before_are_sealed_at_start_and_rotated(tmp_path: Path) -> None:
    """A runbook's webhook URL (and its copy in a run's plan) from an older version is sealed at
    start, then re-wrapped by a rotation like every other sealed value (its old KEK retired)."""
    from novacron.backup.drsteps import hook_url_aad
    from novacron.db.models import DRRunbook, Project, Task, Tenant

    settings = Settings(state_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/novacron.db")
    db = Database(settings.database_url)
    upgrade(db)
    url = "https://hooks.example.com/services/T0/B0/" + "s3cr3t" * 4
    steps = [{"vm": "db", "hooks": [{"when": "after", "url": url}]}]
    with db.session() as s:
        s.add(Tenant(id="t-1", name="t1"))
        s.flush()
        s.add(Project(id="p-1", tenant_id="t-1", name="p1"))
        s.flush()
        s.add(DRRunbook(id="drb-1", tenant_id="t-1", project_id="p-1", name="rb", steps=steps))
        s.add(Task(id="task-1", kind="dr.failover", resource_type="dr-runbook", resource_id="drb-1",
                   params={"plan": steps}))  # fmt: skip
    enc = encryption_for(settings)
    assert sealing.seal_clear_rows(db, enc) == 2
    assert b"s3cr3t" not in (tmp_path / "novacron.db").read_bytes()
    old = enc.keys.current_id
    report = sealing.rotate(settings, db)
    assert report.rewrapped == 2 and report.retired == [old]
    with db.read_session() as s:
        runbook, task = s.get(DRRunbook, "drb-1"), s.get(Task, "task-1")
        assert runbook is not None and task is not None
        for stored in (runbook.steps, task.params["plan"]):
            sealed = stored[0]["hooks"][0]["url"]
            assert enc.kek_of(sealed) == report.new_kek
            assert enc.open_text(sealed, hook_url_aad("drb-1")) == url


def test_webhook_subscriptions_url_and_every_live_secret_are_rotated(tmp_path: Path) -> None:
    """A subscription's sealed URL and each of its signing secrets (two during a secret rotation)
    are re-wrapped by a KEK rotation, the old KEK retired, and still open to the same values."""
    from novacron.db.models import Tenant, WebhookSubscription
    from novacron.webhooks.service import secret_aad, url_aad

    settings = Settings(state_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/novacron.db")
    db = Database(settings.database_url)
    upgrade(db)
    enc = encryption_for(settings)
    url, secrets = (
        "https://hooks.example.com/in?token=" + "t0k3n" * 4,
        ["whsec_" + "A" * 32, "whsec_" + "B" * 32],
    )
    sealed = [{"secret": enc.seal_text(x, secret_aad("whk-1")), "expires_at": None} for x in secrets]
    with db.session() as s:
        s.add(Tenant(id="t-1", name="t1"))
        s.flush()
        s.add(
            WebhookSubscription(
                id="whk-1", tenant_id="t-1", name="h", url=enc.seal_text(url, url_aad("whk-1")),
                url_shown="https://hooks.example.com/in?***", event_types=["*"], resource_types=[],
                secrets=sealed,
            )
        )  # fmt: skip
    assert b"t0k3n" not in (tmp_path / "novacron.db").read_bytes()
    old = enc.keys.current_id
    report = sealing.rotate(settings, db)
    assert report.rewrapped == 3 and report.retired == [old]
    with db.read_session() as s:
        sub = s.get(WebhookSubscription, "whk-1")
        assert sub is not None
        assert enc.open_text(sub.url, url_aad("whk-1")) == url
        assert [enc.open_text(x["secret"], secret_aad("whk-1")) for x in sub.secrets] == secrets
        assert {enc.kek_of(x["secret"]) for x in sub.secrets} == {report.new_kek}
