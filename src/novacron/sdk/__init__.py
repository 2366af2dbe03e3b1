"""The NovaCron Python SDK: a typed client of the whole REST API (docs/sdk.md).

It depends on httpx and the standard library only, never on the server's modules (an
import-linter contract), so it can be shipped and used apart from the platform.
"""

from novacron.sdk.client import Client
from novacron.sdk.core import Core, RetryPolicy
from novacron.sdk.errors import ApiError, NovaCronError, TaskFailed, TransportError, WaitTimeout
from novacron.sdk.follow import Event

__all__ = [
    "ApiError",
    "Client",
    "Core",
    "Event",
    "NovaCronError",
    "RetryPolicy",
    "TaskFailed",
    "TransportError",
    "WaitTimeout",
]
