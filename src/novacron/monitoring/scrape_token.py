"""The scrape token: the credential an operator's Prometheus reads ``GET /metrics`` with.

The node makes it at its first start, one line in ``<state dir>/metrics-scrape-token`` (0600, like
every file of the state dir), so that a Prometheus config can send it with ``authorization:
credentials_file:``. It opens ``/metrics`` and nothing else; a platform admin's token opens it too.
Replacing the file's content (and reloading nothing: it is read at each scrape) rotates it;
deleting it and restarting the node makes a new one.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

from novacron.private import write_private

FILE_NAME = "metrics-scrape-token"
#: says what the token is when it turns up in a config or a log
PREFIX = "ncscrape_"


def token_path(state_dir: Path) -> Path:
    """Where the node keeps its scrape token."""
    return state_dir / FILE_NAME


def ensure_scrape_token(state_dir: Path) -> Path:
    """Make the scrape token unless the node has one; returns its file."""
    path = token_path(state_dir)
    if not path.exists():
        write_private(path, PREFIX + secrets.token_urlsafe(32) + "\n")
    return path


def is_scrape_token(state_dir: Path, presented: str) -> bool:
    """Whether ``presented`` is this node's scrape token (compared in constant time)."""
    try:
        expected = token_path(state_dir).read_text().strip()
    except FileNotFoundError:
        return False
    return bool(expected) and hmac.compare_digest(expected.encode(), presented.encode())
