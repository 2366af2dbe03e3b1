"""The dashboard's side of issue 11 finding 16, in Debian's Chromium against a real server: a
username shared by two tenants signs in with the Tenant field or as name@tenant, and a tenant
role's overview shows shared hosts as a capacity summary, not their allocation counters. And
issue 18's API keys page: a member's key made, used, listed and revoked in the browser. And
issue 17 item 13: the session kept across tabs, deep links and reloads, with no token in storage.
And issue 18's second factor: enrolled in the page, then a sign-in with a code; a passkey added in
the page and used to sign in (Chromium's virtual authenticator). And issue 18's
provable audit log: the chain verified, a checkpoint signed and the log exported from the page.
And issue 18's authorization: a custom role made, assigned and a decision explained in the page.
And issue 18's key service: keys made, rotated and shredded, a write-only secret stored."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.browser import Browser, page_problems
from tests.e2e.conftest import DESKTOP, PASSWORD, PHONE, VIEWS, Cluster
from tests.integration.test_mfa import Authenticator


def test_shared_username_signs_in_with_its_tenant_and_hosts_are_a_summary(
    cluster: Cluster, browser: Any
) -> None:
    username, _ = cluster.tenants["alpha"]
    beta = next(t for t in cluster.admin.get("/v1/tenants").json()["items"] if t["name"] == "beta")
    twin = {
        "username": username,
        "password": "twin-horse-battery-42",
        "role": "member",
        "tenant_id": beta["id"],
    }
    r = cluster.admin.post("/v1/users", json=twin)
    assert r.status_code == 201, r.text
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        # a tenant user without its tenant: the page says what it says for a wrong password
        b._load(lambda: page.goto(f"{cluster.server.url}/"), "#username")
        page.fill("#username", username)
        page.fill("#password", PASSWORD)
        page.click("form button[type=submit]")
        page.wait_for_selector("#login-error .alert")
        assert "Wrong username or password" in page.inner_text("#login-error")
        assert "name@tenant" in page.inner_text("#login-error")  # and what to do instead
        b.login(username, PASSWORD, tenant="alpha")
        assert "alpha" in page.inner_text("[data-testid=who]")
        # or name@tenant in the username field
        twin_browser = Browser(browser, cluster.server.url, DESKTOP)
        try:
            twin_browser.login(f"{username}@beta", twin["password"])
            assert "beta" in twin_browser.page.inner_text("[data-testid=who]")
        finally:
            twin_browser.close()
        b.go("/")
        text = b.main_text()
        assert "vCPUs free" in text and "allocated" not in text, text
    finally:
        b.close()
        cluster.admin.delete(f"/v1/users/{r.json()['id']}")


def _make_key(b: Browser, name: str, expires: str, permissions: tuple[str, ...]) -> None:
    page = b.page
    page.fill("#key-name", name)
    page.fill("#key-expires", expires)
    for permission in permissions:
        page.check(f"#key-permissions input[value='{permission}']")
    page.click("form[aria-label='New API key'] button[type=submit]")


def test_member_makes_a_read_only_api_key_sees_its_token_once_and_revokes_it(
    cluster: Cluster, browser: Any
) -> None:
    """Issue 18's dashboard page: the token is shown once and works with exactly the permission
    ticked; the list shows its use; revoking it in the page ends it; an administrator sees it
    among everyone's; phone and desktop render without problems."""
    username, _ = cluster.tenants["beta"]
    problems: list[str] = []
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login(username, PASSWORD, tenant="beta")
        b.follow("nav a:text-is('API keys')")
        assert "No API keys yet." in b.main_text()
        assert page.query_selector("[data-testid=keys-scope]") is None  # a member sees its own only
        # the API's refusals go under their fields: a bad name, an expiry out of 1-365
        _make_key(b, "Not A Name", "400", ("vm:read",))
        page.wait_for_selector("#key-name[aria-invalid=true]")
        assert page.inner_text("#key-name-error") and page.inner_text("#key-expires-error")
        assert page.query_selector("[data-testid=new-key]") is None
        _make_key(b, "ci-read", "30", ())  # the form was not reset: vm:read is still ticked
        token = page.wait_for_selector("[data-testid=new-key-token]").input_value()
        assert token.startswith("nck_")
        assert "will not be shown again" in page.inner_text("[data-testid=new-key]")
        assert page.inner_text("#key-name-error") == "" and page.inner_text("#key-expires-error") == ""
        b.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=cluster.server.url)
        page.click("[data-testid=new-key] button:text-is('Copy token')")
        page.wait_for_selector("#toasts :text('Token copied.')")
        assert page.evaluate("navigator.clipboard.readText()") == token
        # the token box on a phone and on a desktop, light and dark
        for size, viewport, scheme in VIEWS:
            page.set_viewport_size(viewport)
            page.emulate_media(color_scheme=scheme)
            problems += page_problems(b, "/api-keys", "api-keys-token", size, scheme)
        row = "tr[data-key=ci-read]"
        page.wait_for_selector(f"{row} .badge[data-state=active]")
        assert page.inner_text(f"{row} td[data-label=Permissions]") == "vm:read"
        assert page.inner_text(f"{row} td[data-label='Last used']") == "never"
        with cluster.server.client(token) as key:
            assert key.get("/v1/vms").status_code == 200
            denied = key.post("/v1/vms", json={"name": "by-key", "image": "test-guest", "flavor": "tiny"})
            assert denied.status_code == 403, denied.text
        # shown once: the page loaded again has the key, its use, and no token
        b._load(page.reload, "main[data-ready=true] tr[data-key=ci-read]")
        assert page.query_selector("[data-testid=new-key]") is None
        assert token not in page.content()
        assert "from 127.0.0.1" in page.inner_text(f"{row} td[data-label='Last used']")
        problems += page_problems(b, "/api-keys", "api-keys", "desktop", "dark")
        page.click(f"{row} button:text-is('Revoke')")
        page.click("dialog button.danger")
        page.wait_for_selector(f"{row} .badge[data-state=revoked]")
        with cluster.server.client(token) as key:
            refused = key.get("/v1/vms")
            assert refused.status_code == 401 and "revoked" in refused.text, refused.text
        assert b.errors == [], b.errors
    finally:
        b.close()
    # the tenant's administrator on a phone: its own keys, then everyone's, the member's among them
    beta = next(t for t in cluster.admin.get("/v1/tenants").json()["items"] if t["name"] == "beta")
    boss = {"username": "beta-boss", "password": PASSWORD, "role": "tenant-admin", "tenant_id": beta["id"]}
    r = cluster.admin.post("/v1/users", json=boss)
    assert r.status_code == 201, r.text
    phone = Browser(browser, cluster.server.url, PHONE)
    try:
        phone.login("beta-boss", PASSWORD, tenant="beta")
        phone.page.click("button.menu-toggle")  # a phone's navigation is behind its Menu button
        phone.follow("nav a:text-is('API keys')")
        assert "No API keys yet." in phone.main_text()
        problems += page_problems(phone, "/api-keys", "api-keys", "phone", "light")
        phone.follow("[data-testid=keys-scope]")
        owner = phone.page.inner_text("tr[data-key=ci-read] td[data-label=Owner]")
        assert owner == username
        problems += page_problems(phone, "/api-keys?everyone=true", "api-keys-everyone", "phone", "light")
        assert phone.errors == [], phone.errors
    finally:
        phone.close()
        cluster.admin.delete(f"/v1/users/{r.json()['id']}")
    assert problems == []


def _signed_in_at(tab: Any, url: str, route: str) -> None:
    """Open ``route`` in ``tab`` and wait until it rendered signed in (no login form on the way)."""
    tab.goto(f"{url}/#{route}")
    tab.wait_for_selector("main[data-ready=true]")
    assert tab.locator("#username").count() == 0
    assert tab.locator("[data-testid=who]").count() == 1


def test_session_kept_across_tabs_and_reloads_without_a_token_in_storage(
    cluster: Cluster, browser: Any
) -> None:
    """Issue 17 item 13: a new tab, a bookmarked deep link and a reload stay signed in (the
    refresh token in an HttpOnly cookie, the access token in memory); sign-out ends it everywhere."""
    username, _ = cluster.tenants["alpha"]
    b = Browser(browser, cluster.server.url, DESKTOP)
    try:
        b.login(username, PASSWORD, "alpha")
        cookies = [c for c in b.context.cookies() if c["name"] == "novacron_refresh"]
        assert len(cookies) == 1, b.context.cookies()
        cookie = cookies[0]
        assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"], cookie["path"]) == (
            True,
            True,
            "Strict",
            "/v1/tokens/refresh",
        )
        # the deep link in a new tab of the same browser: straight to the page, signed in
        tab = b.context.new_page()
        tab.on("pageerror", lambda e: b.errors.append(str(e)))
        _signed_in_at(tab, b.url, "/api-keys")
        assert "API keys" in tab.title()
        tab.evaluate("delete document.querySelector('main')?.dataset.ready")
        tab.reload()
        tab.wait_for_selector("main[data-ready=true]")
        assert tab.locator("#username").count() == 0 and username in tab.inner_text("[data-testid=who]")
        for page in (b.page, tab):  # no token any script could read: not in either storage
            stored = page.evaluate(
                "[...Object.entries(sessionStorage), ...Object.entries(localStorage)].flat().join(' ')"
            )
            assert "eyJ" not in stored and "ncr_" not in stored and "novacron.session" not in stored, stored
            assert page.evaluate("document.cookie") == ""  # HttpOnly: invisible to the page
        tab.click("button:has-text('Sign out')")
        tab.wait_for_selector("#username")
        b.page.wait_for_selector("#username")  # the first tab heard of the sign-out
        assert [c for c in b.context.cookies() if c["name"] == "novacron_refresh"] == []
        again = b.context.new_page()
        again.goto(f"{b.url}/#/api-keys")
        again.wait_for_selector("#username")
        assert again.locator("[data-testid=who]").count() == 0
        assert b.errors == [], b.errors
    finally:
        b.close()


def test_a_user_enrols_a_second_factor_and_signs_in_with_a_code(cluster: Cluster, browser: Any) -> None:
    """Issue 18's second factor in the browser: the page shows the secret and the recovery codes
    once; then the sign-in asks for a code after the password, refuses a wrong one and lets the
    right one in."""
    beta = next(t for t in cluster.admin.get("/v1/tenants").json()["items"] if t["name"] == "beta")
    user = {"username": "beta-mfa", "password": PASSWORD, "role": "member", "tenant_id": beta["id"]}
    made = cluster.admin.post("/v1/users", json=user)
    assert made.status_code == 201, made.text
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login("beta-mfa", PASSWORD, tenant="beta")
        b.follow("nav a:text-is('Second factor')")
        page.click("#mfa-enrol")
        page.wait_for_selector("#mfa-secret")
        app = Authenticator(page.input_value("#mfa-secret"))
        assert page.input_value("#mfa-uri").startswith("otpauth://totp/NovaCron:beta-mfa%40beta?")
        page.fill("#mfa-confirm-code", app.code())
        page.click("form[aria-label='Confirm second factor'] button[type=submit]")
        page.wait_for_selector("#mfa-recovery-codes li")
        assert len(page.query_selector_all("#mfa-recovery-codes li")) == 10
        page.wait_for_selector("[data-state=enrolled]")
        page.click("button:has-text('Sign out')")
        # the password alone: a code field; a wrong code is refused, the right one signs in
        page.wait_for_selector("#username")
        page.fill("#username", "beta-mfa")
        page.fill("#password", PASSWORD)
        page.fill("#tenant", "beta")
        page.click("form button[type=submit]")
        page.wait_for_selector("#otp")
        assert page.query_selector("[data-testid=who]") is None
        page.fill("#otp", "000000")
        page.click("form[aria-label='Second factor'] button[type=submit]")
        page.wait_for_selector("#login-error .alert")
        assert "wrong or already used code" in page.inner_text("#login-error")
        page.fill("#otp", app.code())
        page.click("form[aria-label='Second factor'] button[type=submit]")
        page.wait_for_selector("[data-testid=who]", state="attached")
        b.ready()
        assert "beta-mfa" in page.inner_text("[data-testid=who]")
        assert not b.errors, b.errors
    finally:
        b.close()
        cluster.admin.delete(f"/v1/users/{made.json()['id']}")


def _virtual_authenticator(b: Browser) -> tuple[Any, str]:
    """A platform authenticator in Chromium (CDP's WebAuthn domain): what a laptop's would do."""
    cdp = b.context.new_cdp_session(b.page)
    cdp.send("WebAuthn.enable")
    options = {
        "protocol": "ctap2",
        "transport": "internal",
        "hasResidentKey": True,
        "hasUserVerification": True,
        "isUserVerified": True,
    }
    return cdp, str(cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"])


def _password_step(page: Any, username: str, tenant: str) -> None:
    page.wait_for_selector("#username")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.fill("#tenant", tenant)
    page.click("form button[type=submit]")
    page.wait_for_selector("#use-passkey")


def test_a_user_adds_a_passkey_and_signs_in_with_it(cluster: Cluster, browser: Any) -> None:
    """Issue 18's passkeys in Chromium with its virtual authenticator: added in the Second factor
    page, then the sign-in's second step "Use a passkey" lets the user in and the passkey proves
    step-up; a clone of the credential (its id, another key) in another browser is refused. WebAuthn wants a
    secure context and a domain name: the dashboard is opened at localhost."""
    beta = next(t for t in cluster.admin.get("/v1/tenants").json()["items"] if t["name"] == "beta")
    user = {"username": "beta-passkey", "password": PASSWORD, "role": "member", "tenant_id": beta["id"]}
    made = cluster.admin.post("/v1/users", json=user)
    assert made.status_code == 201, made.text
    url = cluster.server.url.replace("127.0.0.1", "localhost")
    b, other = Browser(browser, url, DESKTOP), Browser(browser, url, DESKTOP)
    page = b.page
    try:
        cdp, mine = _virtual_authenticator(b)
        b.login("beta-passkey", PASSWORD, tenant="beta")
        b.follow("nav a:text-is('Second factor')")
        page.fill("#passkey-name", "virtual key")
        page.click("#passkey-add")
        page.wait_for_selector("#passkeys li[data-passkey]:has-text('virtual key')")
        held = cdp.send("WebAuthn.getCredentials", {"authenticatorId": mine})["credentials"]
        assert len(held) == 1 and held[0]["rpId"] == "localhost"
        credential_id = held[0]["credentialId"]
        page.click("button:has-text('Sign out')")
        _password_step(page, "beta-passkey", "beta")
        page.click("#use-passkey")
        page.wait_for_selector("[data-testid=who]", state="attached")
        b.ready()
        assert "beta-passkey" in page.inner_text("[data-testid=who]")
        # the page shows its use, and it proves step-up for sensitive actions (the sign-in kept
        # the route it signed out from: through the overview, so the page renders anew)
        b.go("/")
        b.follow("nav a:text-is('Second factor')")
        page.wait_for_selector("#passkeys li[data-passkey]:has-text('last used')")
        page.click("#passkey-verify")
        page.wait_for_selector("#passkey-verify[data-until]")
        assert "Sensitive actions allowed until" in page.inner_text("main")
        assert not b.errors, b.errors
        # a clone in another browser: the passkey's credential id with another key, and a higher
        # signature counter (what a cloned authenticator would claim): refused
        cdp_other, theirs = _virtual_authenticator(other)
        key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        clone = {
            "credentialId": credential_id,
            "isResidentCredential": False,
            "rpId": "localhost",
            "privateKey": base64.b64encode(key).decode(),
            "signCount": 1000,
        }
        cdp_other.send("WebAuthn.addCredential", {"authenticatorId": theirs, "credential": clone})
        other._load(lambda: other.page.goto(f"{url}/"), "#username")
        _password_step(other.page, "beta-passkey", "beta")
        other.page.click("#use-passkey")
        other.page.wait_for_selector("#login-error .alert")
        assert "passkey was refused" in other.page.inner_text("#login-error")
        assert other.page.query_selector("[data-testid=who]") is None
    finally:
        b.close()
        other.close()
        cluster.admin.delete(f"/v1/users/{made.json()['id']}")


def test_a_tenant_requiring_a_second_factor_sends_its_user_to_enrol(cluster: Cluster, browser: Any) -> None:
    """Issue 18's tenant policy in the browser: a user without a second factor signs in to the
    enrolment page only; once it confirms one, Continue opens the dashboard with a whole token."""
    beta = next(t for t in cluster.admin.get("/v1/tenants").json()["items"] if t["name"] == "beta")
    policy = f"/v1/tenants/{beta['id']}/mfa-policy"
    user = {"username": "beta-new", "password": PASSWORD, "role": "member", "tenant_id": beta["id"]}
    made = cluster.admin.post("/v1/users", json=user)
    assert made.status_code == 201, made.text
    assert cluster.admin.put(policy, json={"require": "everyone"}).status_code == 200
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login("beta-new", PASSWORD, tenant="beta")
        page.wait_for_selector("[data-testid=mfa-required]")
        assert page.evaluate("location.hash") == "#/mfa"
        page.click("#mfa-enrol")
        page.wait_for_selector("#mfa-secret")
        app = Authenticator(page.input_value("#mfa-secret"))
        page.fill("#mfa-confirm-code", app.code())
        page.click("form[aria-label='Confirm second factor'] button[type=submit]")
        page.wait_for_selector("#mfa-recovery-codes li")
        with page.expect_navigation():  # a refreshed token, then the dashboard loaded anew
            page.click("#mfa-continue")
        page.wait_for_selector("[data-testid=who]", state="attached")
        b.ready()

        assert page.evaluate("location.hash") == "#/"
        assert page.query_selector("[data-testid=mfa-required]") is None
        assert "Second factor required" not in b.main_text()
        assert not b.errors, b.errors
    finally:
        b.close()
        cluster.admin.put(policy, json={"require": "none"})
        cluster.admin.delete(f"/v1/users/{made.json()['id']}")


def test_the_audit_page_verifies_the_chain_signs_a_checkpoint_and_exports(
    cluster: Cluster, browser: Any
) -> None:
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login("admin", cluster.server.admin_password)
        b.go("/audit")
        page.click("button:text-is('Sign a checkpoint')")
        proof = "[data-testid=audit-verify]"
        page.wait_for_selector(f"{proof} .badge[data-state=verified]")
        text = page.inner_text(proof)
        assert "records chained" in text and "The last covers" in text, text
        with page.expect_download() as download:
            page.click("button:text-is('Export JSON lines')")
        lines = Path(download.value.path()).read_text().splitlines()
        last = json.loads(lines[-1])
        assert last["seq"] == len(lines) and len(last["hash"]) == 64
        with page.expect_download() as download:
            page.click("button:text-is('Export syslog (RFC 5424)')")
        assert Path(download.value.path()).read_text().startswith("<1")
        assert page_problems(b, "/audit", "audit-proof", "desktop", "light") == []
        assert b.errors == [], b.errors
    finally:
        b.close()


def test_the_security_page_lists_blocks_and_lifts_one(cluster: Cluster, browser: Any) -> None:
    """Issue 18's threat detection: a blocked source listed with its reason, lifted with a click.
    The e2e server trusts no proxy and allow-lists loopback, so its browser cannot be the attacker:
    the block is written as the detector writes it (tests/integration/test_threats.py detects one
    for real); the page, the listing and the lift are the real ones."""
    from datetime import timedelta

    from novacron.db.base import Database, utcnow
    from novacron.db.models import SecurityBlock

    srv = cluster.server
    db = Database(srv.env.get("NOVACRON_DATABASE_URL", f"sqlite:///{srv.state_dir}/novacron.db"))
    with db.session() as s:
        s.add(
            SecurityBlock(
                id="blk-e2e0000000000001",
                source="203.0.113.66",
                kind="credential_stuffing",
                reason="10 accounts in 60 s from 203.0.113.66",
                created_at=utcnow(),
                expires_at=utcnow() + timedelta(minutes=15),
            )
        )
    db.engine.dispose()
    b = Browser(browser, srv.url, DESKTOP)
    page = b.page
    try:
        b.login("admin", srv.admin_password)
        b.go("/security")
        row = "[data-testid=security-blocks] tr[data-source='203.0.113.66']"
        assert "10 accounts in 60 s" in page.inner_text(row)
        page.click(f"{row} button:text-is('Lift')")
        page.click("dialog button.primary")
        page.wait_for_selector(row, state="detached")
        assert "No source is blocked" in page.inner_text("[data-testid=security-blocks]")
        [lifted] = [
            x
            for x in cluster.admin.get("/v1/security/blocks", params={"active": "false"}).json()["items"]
            if x["id"] == "blk-e2e0000000000001"
        ]
        assert lifted["lifted_by"] == "admin"
        assert page_problems(b, "/security", "security", "desktop", "light") == []
        assert b.errors == [], b.errors
    finally:
        b.close()


def test_the_compliance_page_runs_the_checks_and_downloads_the_report(cluster: Cluster, browser: Any) -> None:
    """Issue 18's compliance checks: run from the page, each check's status, controls and evidence
    shown, the evidence report downloaded (tests/integration/test_compliance.py breaks each check)."""
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login("admin", cluster.server.admin_password)
        b.go("/compliance")
        page.click("button:text-is('Run the checks now')")
        audit = "[data-testid=compliance-checks] tr[data-check=audit_chain]"
        page.wait_for_selector(f"{audit}[data-status=pass]")
        assert "PCI-DSS 10.3.2" in page.inner_text(audit)
        # the platform administrator has no second factor: the platform's run says so, by name
        mfa = "[data-testid=compliance-checks] tr[data-check=mfa_admins]"
        assert page.get_attribute(mfa, "data-status") == "fail"
        page.click(f"{mfa} summary")
        assert '"user": "admin"' in page.inner_text("[data-testid=evidence-mfa_admins]")
        assert "passed" in page.inner_text("[data-testid=compliance-summary]")
        with page.expect_download() as download:
            page.click("button:text-is('Report (CSV)')")
        text = Path(download.value.path()).read_text()
        assert text.startswith("run_id,scope,tenant_id,check,status") and "audit_chain" in text
        assert page_problems(b, "/compliance", "compliance", "desktop", "light") == []
    finally:
        b.close()


def test_the_roles_page_makes_a_custom_role_assigns_it_and_explains_a_decision(
    cluster: Cluster, browser: Any
) -> None:
    """Issue 18's custom roles in the browser: a tenant-admin makes a label-conditioned role from
    the permission catalogue, assigns it to a user, and the page explains what the user may do
    (the per-VM label decisions themselves: tests/integration/test_custom_roles.py)."""
    alpha = next(t for t in cluster.admin.get("/v1/tenants").json()["items"] if t["name"] == "alpha")
    body = {"username": "alpha-roles", "password": PASSWORD, "role": "tenant-admin", "tenant_id": alpha["id"]}
    assert cluster.admin.post("/v1/users", json=body).status_code == 201
    member, _ = cluster.tenants["alpha"]
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    try:
        b.login("alpha-roles", PASSWORD, tenant="alpha")
        b.follow("nav a:text-is('Roles')")
        assert "read-only" in page.inner_text("[data-testid=roles] tr[data-role=viewer]")
        page.fill("#role-name", "blue-ops")
        page.fill("#role-labels", "team=blue")
        for permission in ("vm:read", "vm:power"):
            page.check(f"#role-permissions input[value='{permission}']")
        page.click("button:text-is('Create role')")
        row = "[data-testid=roles] tr[data-role=blue-ops]"
        page.wait_for_selector(row)
        assert "team=blue" in page.inner_text(row) and "vm:power vm:read" in page.inner_text(row)
        page.select_option("#ra-user", member)
        page.select_option("#ra-role", "blue-ops")
        page.fill("#ra-labels", "team=blue")
        page.click("button:text-is('Assign')")
        page.wait_for_selector("[data-testid=role-assignments] tr[data-assignment]")
        assigned = page.inner_text("[data-testid=role-assignments]")
        assert member in assigned and "blue-ops" in assigned and "whole tenant" in assigned
        result = "[data-testid=explain-result]"
        for action, verdict, why in (
            # the refusal names every role the user holds, the assigned one too
            (
                "user:write",
                "denied",
                f"no role of '{member}' holds user:write (role 'member', assignment ra-",
            ),
            ("vm:read", "allowed", "role 'member' (the user's role)"),
        ):
            page.fill("#explain-user", member)
            page.fill("#explain-action", action)
            page.fill("#explain-resource", "tenant")
            page.click("button:text-is('Explain')")
            page.wait_for_selector(f"{result} :text('{action} on the tenant')")
            text = page.inner_text(result)
            assert verdict in text and why in text, text
            assert action != "user:write" or "role 'blue-ops'" in text, text
        assert page_problems(b, "/roles", "roles", "desktop", "light") == []
        assert b.errors == [], b.errors
    finally:
        b.close()


def test_the_keys_page_makes_rotates_and_shreds_a_key_and_stores_a_write_only_secret(
    cluster: Cluster, browser: Any
) -> None:
    """Issue 18's key service in the page: a tenant admin makes a key (a bad name refused under its
    field), rotates it to version 2, stores a secret whose value the page never shows again, and
    shreds the key after confirming; phone and desktop render without problems."""
    beta = next(t for t in cluster.admin.get("/v1/tenants").json()["items"] if t["name"] == "beta")
    body = {"username": "beta-keys", "password": PASSWORD, "role": "tenant-admin", "tenant_id": beta["id"]}
    r = cluster.admin.post("/v1/users", json=body)
    assert r.status_code == 201, r.text
    value = "page-secret-" + base64.b32encode(b"kms-e2e").decode()
    b = Browser(browser, cluster.server.url, DESKTOP)
    page = b.page
    problems: list[str] = []
    try:
        b.login("beta-keys", PASSWORD, tenant="beta")
        b.follow("nav a:text-is('Keys & secrets')")
        assert "No keys yet." in b.main_text()
        page.fill("#kms-key-name", "Bad Name")
        page.click("form:has(#kms-key-name) button[type=submit]")
        page.wait_for_selector("#kms-key-name-error:not(:empty)")
        page.fill("#kms-key-name", "app")
        page.select_option("#kms-key-algorithm", "chacha20-poly1305")
        page.click("form:has(#kms-key-name) button[type=submit]")
        row = "tr[data-key=app]"
        page.wait_for_selector(f"{row} .badge[data-state=enabled]")
        assert page.inner_text(f"{row} td[data-label=Algorithm]") == "chacha20-poly1305"
        page.click(f"{row} button:text-is('Rotate')")
        page.wait_for_selector(f"{row} td[data-label=Version]:text-is('2')")
        page.fill("#kms-secret-name", "db-password")
        page.fill("#kms-secret-secret_value", value)
        page.click("form:has(#kms-secret-name) button[type=submit]")
        page.wait_for_selector("tr[data-secret=db-password]")
        assert "/run/novacron/secrets/db-password" in page.inner_text("tr[data-secret=db-password]")
        assert value not in page.content()
        for size, viewport, scheme in VIEWS:
            page.set_viewport_size(viewport)
            page.emulate_media(color_scheme=scheme)
            problems += page_problems(b, "/kms", "kms", size, scheme)
        page.set_viewport_size(DESKTOP)
        page.click(f"{row} button:text-is('Shred')")
        assert "unreadable for ever" in page.inner_text("dialog")
        page.click("dialog button.danger")
        page.wait_for_selector(f"{row} .badge[data-state=destroyed]")
        assert problems == [], problems
        assert b.errors == [], b.errors
    finally:
        b.close()
