"""Single sign-on's pure parts: the role a provider's groups give, the presets' defaults, the
authorization URL (PKCE S256, state, nonce) Authlib builds."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from novacron import netguard
from novacron.db.models import IdentityProvider
from novacron.errors import InvalidInput
from novacron.identity import sso_client
from novacron.identity.sso_providers import ProviderSpec, _with_defaults, role_of


def _provider(**kw: Any) -> IdentityProvider:
    mappings = [{"group": "ops", "role": "tenant-admin"}, {"group": "devs", "role": "member"}]
    return IdentityProvider(group_roles=kw.get("group_roles", mappings), default_role=kw.get("default_role"))


def test_the_most_powerful_role_of_the_groups_wins_and_the_default_covers_the_rest() -> None:
    assert role_of(_provider(), ["devs", "ops"]) == "tenant-admin"
    assert role_of(_provider(), ["devs", "other"]) == "member"
    assert role_of(_provider(), ["other"]) is None  # no default: may not sign in
    assert role_of(_provider(default_role="viewer"), []) == "viewer"


def test_presets_fill_in_issuer_scopes_and_username_claim() -> None:
    google = _with_defaults(ProviderSpec(preset="google"))
    assert google.issuer == "https://accounts.google.com" and google.username_claim == "email"
    assert google.scopes == ["openid", "profile", "email"]
    github = _with_defaults(ProviderSpec(preset="github"))
    assert github.issuer == "https://github.com" and github.username_claim == "login"
    entra = _with_defaults(ProviderSpec(preset="entra", issuer="https://login.microsoftonline.com/x/v2.0"))
    assert "offline_access" in (entra.scopes or []) and entra.issuer.endswith("/v2.0")  # type: ignore[union-attr]
    with pytest.raises(InvalidInput) as err:
        _with_defaults(ProviderSpec(preset="okta"))
    assert err.value.fields[0].field == "preset"


def test_the_authorization_url_carries_pkce_s256_state_and_nonce() -> None:
    endpoints = sso_client.Endpoints("https://idp.test", "https://idp.test/auth", "https://idp.test/token",
                                     None, None, None, None)  # fmt: skip
    client = sso_client.Client(endpoints, "app", "secret", netguard.EgressPolicy())
    url, pending = client.authorization_url(
        "https://nc.test/v1/sso/callback", ["openid", "email"], {"prompt": "x"}
    )
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith("https://idp.test/auth?")
    assert query["state"] == pending["state"] and query["nonce"] == pending["nonce"]
    assert query["code_challenge"] == create_s256_code_challenge(pending["verifier"])
    assert query["code_challenge_method"] == "S256" and query["scope"] == "openid email"
    assert query["client_id"] == "app" and query["response_type"] == "code" and query["prompt"] == "x"
    assert len(pending["verifier"]) >= 43  # RFC 7636: 43 to 128 characters
