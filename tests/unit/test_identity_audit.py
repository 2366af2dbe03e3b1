from __future__ import annotations

import pytest

from novacron.identity.audit import action_name, outcome_of


@pytest.mark.parametrize(
    ("method", "template", "expected"),
    [
        ("POST", "/v1/projects", "project.create"),
        ("PATCH", "/v1/projects/{project_id}", "project.update"),
        ("DELETE", "/v1/users/{user_id}", "user.delete"),
        ("POST", "/v1/users/{user_id}/password", "user.password"),
        ("POST", "/v1/tokens", "token.create"),
        ("POST", "/v1/tokens/refresh", "token.refresh"),
        ("DELETE", "/v1/tokens/current", "token.delete"),
        ("POST", "/v1/signing-keys/rotate", "signing-key.rotate"),
        ("POST", "/v1/vms/{vm_id}/start", "vm.start"),
        ("POST", "/v1/policies", "policy.create"),
    ],
)
def test_action_names(method: str, template: str, expected: str) -> None:
    assert action_name(method, template, template) == expected


def test_unrouted_path_keeps_method_and_path() -> None:
    assert action_name("POST", None, "/nope") == "POST /nope"


def test_outcomes() -> None:
    assert [outcome_of(s) for s in (200, 201, 204, 401, 403, 404, 409, 422, 500)] == [
        "success",
        "success",
        "success",
        "denied",
        "denied",
        "denied",
        "failed",
        "failed",
        "failed",
    ]
