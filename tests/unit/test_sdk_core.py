"""The SDK core's retry arithmetic: ``Retry-After`` in both of its forms, and when it gives up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx

from novacron.sdk.core import RetryPolicy, expand, retry_after


def test_retry_after_is_read_as_seconds_or_as_a_date() -> None:
    assert retry_after(httpx.Response(503, headers={"Retry-After": "7"})) == 7.0
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    assert 15 < (retry_after(httpx.Response(503, headers={"Retry-After": later})) or 0) <= 20
    assert retry_after(httpx.Response(503)) is None
    assert retry_after(httpx.Response(503, headers={"Retry-After": "soon"})) is None


def test_the_policy_backs_off_honours_retry_after_and_gives_up() -> None:
    policy = RetryPolicy(attempts=3, backoff_s=1.0, max_retry_after_s=30)
    assert 0.5 <= (policy.pause(1) or 0) <= 1.0 and 1.0 <= (policy.pause(2) or 0) <= 2.0
    assert policy.pause(3) is None  # the third try was the last
    assert policy.pause(1, httpx.Response(429, headers={"Retry-After": "4"})) == 4.0
    assert policy.pause(1, httpx.Response(429, headers={"Retry-After": "120"})) is None  # too long to wait


def test_path_parameters_are_percent_encoded() -> None:
    assert expand("/v1/vms/{vm_id}/actions/{action}", {"vm_id": "a/b c", "action": "start"}) == (
        "/v1/vms/a%2Fb%20c/actions/start"
    )
