"""Webhook secrets, signatures and retry delays, without a server (the delivery itself is tested
end to end in tests/integration/test_webhooks.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from novacron.webhooks import signing
from novacron.webhooks.dispatch import MAX_DELAY_S, backoff


def test_secrets_are_checked_and_every_live_one_signs() -> None:
    made = signing.new_secret()
    assert signing.secret_problem(made) is None
    assert "whsec_" in (signing.secret_problem("abc") or "")
    assert "base64" in (signing.secret_problem("whsec_not base64!") or "")
    assert "24 to 64" in (signing.secret_problem("whsec_" + "QUJD") or "")
    other = signing.new_secret()
    body = b'{"type":"vm.created"}'
    headers = signing.headers("msg_1", datetime.now(UTC), body, [made, other])
    for secret in (made, other):  # a receiver holding either secret verifies the message
        assert Webhook(secret).verify(body, headers) == {"type": "vm.created"}
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)


def test_retry_delays_double_with_jitter_and_are_capped() -> None:
    rng = random.Random(1)
    for attempts, base in ((1, 5.0), (2, 5.0), (3, 5.0), (6, 0.4)):
        delay = base * 2 ** (attempts - 1)
        got = [backoff(attempts, base, rng) for _ in range(200)]
        assert delay / 2 <= min(got) and max(got) <= delay
        assert max(got) - min(got) > delay / 4  # spread: failed receivers are not retried in step
    assert backoff(40, 5.0, rng) <= MAX_DELAY_S
