"""What the alerting tests share: the receivers' ends (a webhook receiver's records, an SMTP
inbox), the webhook signature check, and waiting for a condition with a deadline."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the signing secret the tests give their webhook receivers
SECRET = "whsec-0123456789abcdef"


@dataclass
class Inbox:
    """An aiosmtpd handler keeping what it was sent."""

    messages: list[tuple[float, list[str], str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((time.time(), list(envelope.rcpt_tos), envelope.content.decode()))
        return "250 OK"


def webhook_posts(posts_dir: Path, path: str) -> list[dict[str, Any]]:
    """The POSTs an ``egresslab`` origin recorded for ``path``, oldest first."""
    files = sorted(posts_dir.glob("*.json")) if posts_dir.exists() else []
    return [r for r in (json.loads(f.read_text()) for f in files) if r["path"] == path]


def wait_for(what: str, check: Callable[[], Any], timeout_s: float = 60.0, every_s: float = 0.1) -> Any:
    """The first truthy answer of ``check``, polled until ``timeout_s`` (then fail naming ``what``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def verified(post: dict[str, Any]) -> dict[str, Any]:
    """The webhook's document, once its signature checks out against the receiver's secret."""
    header = {k.lower(): v for k, v in post["headers"].items()}["novacron-signature"]
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(SECRET.encode(), f"{parts['t']}.{post['body']}".encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected), "bad webhook signature"
    assert abs(time.time() - int(parts["t"])) < 300
    document: dict[str, Any] = json.loads(post["body"])
    return document
