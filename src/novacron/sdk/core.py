"""The request core every SDK call (and the CLI) goes through: auth, retries, idempotency keys, errors.

- **Retries.** A request is retried, with exponential backoff and jitter, after a broken or refused
  connection and after 429/502/503/504 (honouring ``Retry-After``), when repeating it cannot do a
  thing twice: a safe method (GET, HEAD, OPTIONS), or a write carrying an ``Idempotency-Key`` that
  the server honours (the operations whose OpenAPI entry declares that header; the generated
  methods say so) or that the caller gave explicitly. A timeout is not retried: the caller's
  timeout would silently multiply.
- **Idempotency keys.** Every POST/PUT/PATCH/DELETE gets an ``Idempotency-Key`` (a uuid4) unless
  one is given; the retries of one call reuse it, so the server answers a replay with what the
  first attempt made instead of making a second one.
- **Errors.** An error status raises ``ApiError`` (the problem+json parts), a transport failure
  ``TransportError``; a 401 first asks ``on_unauthorized`` (a token refresh) once.
"""

from __future__ import annotations

import contextlib
import random
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from novacron.sdk.errors import ApiError, TransportError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: transport failures after which the request may be sent again (not timeouts, see above)
RETRY_ERRORS = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
PAGE_SIZE = 500

Content = bytes | Callable[[], Iterable[bytes]]


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a retryable request is tried again."""

    attempts: int = 4  #: tries in all, the first included
    backoff_s: float = 0.2  #: the first pause; doubled each time, with jitter
    max_backoff_s: float = 5.0
    max_retry_after_s: float = 30.0  #: a longer Retry-After is not waited for: the error is raised

    def pause(self, attempt: int, response: httpx.Response | None = None) -> float | None:
        """Seconds to wait before try ``attempt + 1``; None: give up."""
        if attempt >= self.attempts:
            return None
        backoff = min(self.max_backoff_s, self.backoff_s * 2.0 ** (attempt - 1))
        backoff *= 0.5 + random.random() / 2  # noqa: S311  (jitter, not a secret)
        after = retry_after(response) if response is not None else None
        if after is None:
            return backoff
        return after if after <= self.max_retry_after_s else None


NO_RETRY = RetryPolicy(attempts=1)


def retry_after(response: httpx.Response) -> float | None:
    """The ``Retry-After`` of a response in seconds (delta or HTTP date), None when absent."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    with contextlib.suppress(TypeError, ValueError):
        return float(max(0.0, parsedate_to_datetime(value).timestamp() - time.time()))
    return None


def expand(path: str, path_params: Mapping[str, object] | None) -> str:
    """``/v1/vms/{vm_id}`` with each parameter percent-encoded (a name may hold a slash)."""
    if not path_params:
        return path
    return path.format(**{k: quote(str(v), safe="") for k, v in path_params.items()})


def _retryable_transport(exc: httpx.TransportError) -> bool:
    text = str(exc).lower()
    # a certificate or protocol mismatch will not heal by itself
    return isinstance(exc, RETRY_ERRORS) and "certificate" not in text and "wrong version" not in text


class Core:
    """One connection pool to one NovaCron server, and the request loop above."""

    def __init__(  # noqa: PLR0913  (connection settings, all keyword-only)
        self,
        base_url: str,
        *,
        token: str | None = None,
        verify: ssl.SSLContext | bool = True,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        on_unauthorized: Callable[[], bool] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        #: the bearer credential: an access token or an API key (``nck_...``)
        self.token = token or ""
        self.retry = retry or RetryPolicy()
        self.on_unauthorized = on_unauthorized
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport, verify=verify)

    def close(self) -> None:
        self.http.close()

    def headers(self, extra: Mapping[str, str] | None = None, *, auth: bool = True) -> dict[str, str]:
        headers = {"Accept": "application/json, application/problem+json"}
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def request(  # noqa: PLR0913  (httpx's request options, all keyword-only)
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: Content | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | httpx.Timeout | None = None,
        auth: bool = True,
        idempotent: bool = False,
        idempotency_key: str | None = None,
    ) -> httpx.Response:
        """One call: retried as the module says, refreshed once on 401. Raises on an error status."""
        method = method.upper()
        sent = {k: v for k, v in (headers or {}).items()}
        given = idempotency_key or next((v for k, v in sent.items() if k.lower() == "idempotency-key"), None)
        if method in WRITE_METHODS:
            sent = {k: v for k, v in sent.items() if k.lower() != "idempotency-key"}
            sent["Idempotency-Key"] = given or str(uuid.uuid4())
        retryable = method in SAFE_METHODS or (method in WRITE_METHODS and (idempotent or given is not None))
        query = {k: v for k, v in (params or {}).items() if v is not None}
        attempt, refreshed = 0, False
        while True:
            attempt += 1
            try:
                response = self.http.request(
                    method,
                    path,
                    params=query,
                    json=json,
                    content=(content() if callable(content) else content) if content is not None else None,
                    headers=self.headers(sent, auth=auth),
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except httpx.TransportError as exc:
                pause = self.retry.pause(attempt) if retryable and _retryable_transport(exc) else None
                if pause is None:
                    where = f"{method} {self.base_url}{path}"
                    raise TransportError(f"{where}: {exc or type(exc).__name__}", exc) from exc
                time.sleep(pause)
                continue
            if response.status_code == 401 and auth and not refreshed and self.on_unauthorized is not None:
                refreshed = True
                if self.on_unauthorized():
                    attempt -= 1
                    continue
            if response.status_code in RETRY_STATUSES and retryable:
                pause = self.retry.pause(attempt, response)
                if pause is not None:
                    time.sleep(pause)
                    continue
            if response.is_error:
                raise ApiError.of(response)
            return response

    def call(  # noqa: PLR0913  (the parts of an operation, all keyword-only)
        self,
        method: str,
        path: str,
        *,
        path_params: Mapping[str, object] | None = None,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: Content | None = None,
        headers: Mapping[str, str | None] | None = None,
        idempotent: bool = False,
        idempotency_key: str | None = None,
        raw: bool = False,
    ) -> Any:
        """An operation of the API: its JSON answer (None when it has no body), or, with ``raw``,
        the response itself (for the few that answer text, a file or a stream)."""
        response = self.request(
            method,
            expand(path, path_params),
            params=params,
            json=json,
            content=content,
            headers={k: v for k, v in (headers or {}).items() if v is not None},
            idempotent=idempotent,
            idempotency_key=idempotency_key,
        )
        if raw:
            return response
        return response.json() if response.content else None

    def paginate(
        self,
        path: str,
        *,
        path_params: Mapping[str, object] | None = None,
        params: Mapping[str, Any] | None = None,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[Any]:
        """Every item of a listing, page after page (the API's ``limit`` and ``next_cursor``)."""
        query = {**(params or {}), "limit": page_size}
        while True:
            page = self.call("GET", path, path_params=path_params, params=query)
            yield from page.get("items", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return
            query["cursor"] = cursor

    @contextlib.contextmanager
    def stream(
        self,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
    ) -> Iterator[httpx.Response]:
        """A streaming GET (server-sent events, an export): no read timeout unless given (a quiet
        stream is not a dead one), one refresh on 401."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        for attempt in (1, 2):
            try:
                with self.http.stream(
                    "GET",
                    path,
                    params=query,
                    headers=self.headers({"Accept": "text/event-stream", **(headers or {})}),
                    timeout=httpx.Timeout(30.0, read=read_timeout),
                ) as response:
                    refresh = response.status_code == 401 and attempt == 1 and self.on_unauthorized
                    if refresh and self.on_unauthorized is not None and self.on_unauthorized():
                        continue
                    if response.is_error:
                        response.read()
                        raise ApiError.of(response)
                    yield response
                    return
            except httpx.TransportError as exc:
                raise TransportError(f"GET {self.base_url}{path}: {exc or type(exc).__name__}", exc) from exc
