"""``Client``: the typed NovaCron client, every operation of the REST API plus the conveniences.

    from novacron.sdk import Client

    with Client("https://nova.example:8080", token=api_key, ca_file="ca.crt") as nc:
        accepted = nc.vms.create_vm({"name": "web-1", "image": "debian", "flavor": "small"})
        nc.wait_task(accepted["task_id"], on_progress=lambda t: print(t["progress"]))
        for vm in nc.vms.iter_vms(state="running"):
            print(vm["name"])

The operations (``nc.<tag>.<operation>``) are generated from docs/openapi.json
(scripts/sdk_gen.py); this module adds the connection settings, task waiting and event following.
"""

from __future__ import annotations

import ssl
from collections.abc import Generator, Iterable
from types import TracebackType
from typing import Any

import httpx

from novacron.sdk import follow
from novacron.sdk.core import Core, RetryPolicy
from novacron.sdk.errors import NovaCronError
from novacron.sdk.generated import Api
from novacron.sdk.generated import models as m


class Client(Api):
    """A NovaCron server, as one authenticated, retrying connection pool."""

    def __init__(  # noqa: PLR0913  (connection settings, all keyword-only)
        self,
        base_url: str,
        *,
        token: str | None = None,
        api_key: str | None = None,
        ca_file: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``token``: an access token (``POST /v1/tokens``); ``api_key``: an API key (the same
        bearer header); ``ca_file``: the CA that signed the server's certificate (the platform CA,
        ``<state dir>/pki/ca.crt``), else the system's trusted CAs."""
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca_file) if ca_file else True
        self.core = Core(
            base_url, token=token or api_key, verify=verify, timeout=timeout, retry=retry, transport=transport
        )
        super().__init__(self.core)

    @classmethod
    def login(
        cls, base_url: str, username: str, password: str, *, tenant: str | None = None, **settings: Any
    ) -> Client:
        """A client holding an access token for ``username`` (of ``tenant``, when a name is shared
        across tenants); a user who must give a second factor gets ``NovaCronError``."""
        client = cls(base_url, **settings)
        grant: m.PasswordGrant = {"username": username, "password": password}
        if tenant is not None:
            grant["tenant"] = tenant
        tokens: dict[str, Any] = dict(client.tokens.create_token(grant))
        if "access_token" not in tokens:
            client.close()
            raise NovaCronError(f"{username} needs a second factor: log in with tokens.second_factor")
        client.core.token = str(tokens["access_token"])
        return client

    def close(self) -> None:
        self.core.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def wait_task(
        self,
        task_id: str,
        *,
        on_progress: follow.ProgressCallback | None = None,
        timeout: float | None = None,
        raise_on_failure: bool = True,
        use_events: bool = True,
    ) -> dict[str, Any]:
        """Wait until the task ends; ``on_progress(task)`` on each change. See ``follow.wait_task``."""
        return follow.wait_task(
            self.core,
            task_id,
            on_progress=on_progress,
            timeout=timeout,
            raise_on_failure=raise_on_failure,
            use_events=use_events,
        )

    def follow_events(
        self,
        *,
        types: Iterable[str] | str | None = None,
        last_event_id: int | None = None,
        max_reconnects: int = 10,
    ) -> Generator[follow.Event, None, None]:
        """Events as they happen, resuming after a broken connection. See ``follow.follow_events``."""
        return follow.follow_events(
            self.core, types=types, last_event_id=last_event_id, max_reconnects=max_reconnects
        )
