"""The CLI's REST client: server URL and stored tokens, automatic refresh, errors as exceptions.

The CLI talks to NovaCron only through this client, never to the database. Its HTTP layer is the
SDK's request core (novacron.sdk.core: retries of safe requests, an ``Idempotency-Key`` on every
write, problem+json errors); this module adds the CLI's credentials file, its CA choice and its
error messages with hints.
Credentials live in ``$NOVACRON_CONFIG`` or ``~/.config/novacron/credentials.json`` (mode 0600);
``NOVACRON_URL`` and ``NOVACRON_TOKEN`` override what is stored.

HTTPS is verified, always: against ``--ca-file`` / ``NOVACRON_CA_FILE`` / the CA file stored by
``login``, else, for a server on this machine, the platform CA in the local state directory
(``$NOVACRON_STATE_DIR/pki/ca.crt``) when it is readable, else the system's trusted CAs.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from novacron.config import is_loopback
from novacron.sdk import errors as sdk_errors
from novacron.sdk.core import Core, RetryPolicy
from novacron.sdk.errors import problem_of
from novacron.sdk.follow import parse_sse

__all__ = [
    "ApiError",
    "CliError",
    "Client",
    "ConnectError",
    "Credentials",
    "parse_sse",
    "problem_of",
    "resolve",
]

DEFAULT_SERVER = "https://127.0.0.1:8080"
DEFAULT_STATE_DIR = "/var/lib/novacron"
START_HINT = (
    "Is the server running? Start it with `novacron-server` "
    "(or point the CLI elsewhere with --server URL or NOVACRON_URL)."
)


class CliError(Exception):
    """An error the CLI reports in one readable block, then exits with ``exit_code``."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str = "", exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code


class ApiError(CliError):
    """The server answered with an error (RFC 9457 problem+json, or something else)."""

    def __init__(self, status: int, problem: dict[str, Any], *, hint: str = "") -> None:
        self.status = status
        self.problem = problem
        super().__init__(str(problem.get("detail") or problem.get("title") or f"HTTP {status}"), hint=hint)


class ConnectError(CliError):
    exit_code = 2


# ---------------------------------------------------------------- credentials


def config_path() -> Path:
    env = os.environ.get("NOVACRON_CONFIG")
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "novacron" / "credentials.json"


def normalize_server(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "https://" + url
    return url


def _is_local(server: str) -> bool:
    return is_loopback(httpx.URL(server).host)


def choose_ca_file(server: str, explicit: str | None, stored: str) -> str | None:
    """The CA file to verify ``server`` with; None: the system's trusted CAs."""
    chosen = explicit or os.environ.get("NOVACRON_CA_FILE") or stored
    if chosen:
        return str(Path(chosen).expanduser())
    if server.startswith("https://") and _is_local(server):
        # a node on this machine: its platform CA, when this user may read it
        local = Path(os.environ.get("NOVACRON_STATE_DIR") or DEFAULT_STATE_DIR) / "pki" / "ca.crt"
        if os.access(local, os.R_OK):
            return str(local)
    return None


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verifying TLS: certificate chain and host name, against ``ca_file`` or the system's CAs."""
    try:
        return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    except (OSError, ssl.SSLError) as exc:
        raise CliError(
            f"cannot read the CA certificate {ca_file}: {exc}",
            hint="Give the platform CA with --ca-file (on the server: <state dir>/pki/ca.crt).",
        ) from exc


@dataclass
class Credentials:
    server: str = ""
    username: str = ""
    access_token: str = ""
    refresh_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> Credentials:
        path = path or config_path()
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise CliError(
                f"cannot read credentials file {path}: {exc}",
                hint="Delete it and run `novacron login` again.",
            ) from exc
        if not isinstance(data, dict):
            return cls()
        names = ("server", "username", "access_token", "refresh_token")
        known = {k: str(data.pop(k, "") or "") for k in names}
        return cls(**known, extra=data)

    def save(self, path: Path | None = None) -> Path:
        """Write atomically with mode 0600 (the directory 0700): tokens are secrets."""
        path = path or config_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {
            **self.extra,
            "server": self.server,
            "username": self.username,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
        }
        fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
                f.write("\n")
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path


# ---------------------------------------------------------------- client


class Client:
    """The CLI's session. Every method raises ``ApiError``/``ConnectError``, never httpx or SDK errors."""

    def __init__(
        self,
        server: str | None = None,
        *,
        token: str | None = None,
        credentials_path: Path | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        ca_file: str | None = None,
    ) -> None:
        self.credentials_path = credentials_path or config_path()
        self.creds = Credentials.load(self.credentials_path)
        chosen = server or os.environ.get("NOVACRON_URL") or self.creds.server or DEFAULT_SERVER
        self.server = normalize_server(chosen)
        same_server = bool(self.creds.server) and normalize_server(self.creds.server) == self.server
        stored_ca = str(self.creds.extra.get("ca_file") or "") if same_server else ""
        self.ca_file = choose_ca_file(self.server, ca_file, stored_ca)
        #: for the console's WebSocket: the same trust as the REST calls
        self.ssl_context = tls_context(self.ca_file) if self.server.startswith("https://") else None
        env_token = token or os.environ.get("NOVACRON_TOKEN")
        self.fixed_token = bool(env_token)
        self.core = Core(
            self.server,
            token=env_token or (self.creds.access_token if same_server else ""),
            verify=self.ssl_context or True,
            timeout=timeout,
            # a command line waits less than a program would before saying the server is away
            retry=RetryPolicy(attempts=3),
            transport=transport,
            on_unauthorized=self.try_refresh,
        )
        self.http = self.core.http

    @property
    def token(self) -> str:
        return self.core.token

    @token.setter
    def token(self, value: str) -> None:
        self.core.token = value

    def close(self) -> None:
        self.core.close()

    # -- low level

    def _connect_error(self, exc: httpx.TransportError) -> ConnectError:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            return ConnectError(f"{self.server} did not answer in time ({reason}).")
        if "CERTIFICATE_VERIFY_FAILED" in reason:
            where = f"the CA in {self.ca_file}" if self.ca_file else "the system's trusted CAs"
            return ConnectError(
                f"the certificate of {self.server} does not verify against {where}: {reason}",
                hint="Give the node's platform CA with --ca-file (on the server: "
                f"{DEFAULT_STATE_DIR}/pki/ca.crt) or NOVACRON_CA_FILE.",
            )
        if "wrong version number" in reason.lower() or "record layer failure" in reason.lower():
            return ConnectError(
                f"{self.server} does not speak TLS: {reason}",
                hint="Is it a plain-HTTP node (NOVACRON_PLAIN_HTTP=1)? Use an http:// URL for it.",
            )
        return ConnectError(f"cannot connect to {self.server}: {reason}", hint=START_HINT)

    @contextlib.contextmanager
    def translated(self) -> Iterator[None]:
        """The SDK's errors as the CLI's, with their hints."""
        try:
            yield
        except sdk_errors.ApiError as exc:
            raise self.api_error(exc.status, exc.problem) from exc
        except sdk_errors.TransportError as exc:
            raise self._connect_error(exc.cause) from exc

    def send(  # noqa: PLR0913  (httpx's request options, all keyword-only)
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        content: Callable[[], Iterable[bytes]] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | httpx.Timeout | None = None,
        auth: bool = True,
    ) -> httpx.Response:
        """One request (the SDK core: retried when safe, refreshed once on 401). Raises on any error."""
        with self.translated():
            return self.core.request(
                method,
                path,
                json=json_body,
                params=params,
                content=content,
                headers=headers,
                timeout=timeout,
                auth=auth,
            )

    def error_for(self, response: httpx.Response) -> ApiError:
        return self.api_error(response.status_code, problem_of(response))

    def api_error(self, status: int, problem: dict[str, Any]) -> ApiError:
        hint = ""
        if status == 401:
            hint = (
                "NOVACRON_TOKEN was refused; unset it or use a valid token."
                if self.fixed_token
                else f"Log in first: novacron login --server {self.server}"
            )
        if status == 409 and isinstance(problem.get("candidates"), list):
            hint = "Give the id of the one you mean instead of the name."
        return ApiError(status, problem, hint=hint)

    def try_refresh(self) -> bool:
        """Exchange the stored refresh token for new tokens; False when that is not possible."""
        if self.fixed_token or not self.creds.refresh_token or not self.token:
            return False
        try:
            r = self.http.post("/v1/tokens/refresh", json={"refresh_token": self.creds.refresh_token})
        except httpx.TransportError as exc:
            raise self._connect_error(exc) from exc
        if r.is_error:
            return False
        self.store_tokens(r.json(), self.creds.username)
        return True

    def store_tokens(self, tokens: dict[str, Any], username: str) -> Path:
        self.creds.server = self.server
        self.creds.username = username
        self.creds.access_token = str(tokens["access_token"])
        self.creds.refresh_token = str(tokens.get("refresh_token") or "")
        if self.ca_file:
            self.creds.extra["ca_file"] = str(Path(self.ca_file).resolve())
        else:
            self.creds.extra.pop("ca_file", None)
        self.token = self.creds.access_token
        return self.creds.save(self.credentials_path)

    # -- JSON helpers

    def get(self, path: str, **params: Any) -> Any:
        return self.send("GET", path, params=params).json()

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        r = self.send("POST", path, json_body=body if body is not None else {}, params=params)
        return r.json() if r.content else None

    def patch(self, path: str, body: Any) -> Any:
        return self.send("PATCH", path, json_body=body).json()

    def put(self, path: str, body: Any) -> Any:
        return self.send("PUT", path, json_body=body).json()

    def delete(self, path: str) -> Any:
        r = self.send("DELETE", path)
        return r.json() if r.content else None

    def list_all(self, path: str, *, limit: int | None = None, **params: Any) -> dict[str, Any]:
        """A page when ``limit`` is given; otherwise every page, merged into one ``{items, next_cursor}``."""
        if limit is not None:
            page: dict[str, Any] = self.get(path, limit=limit, **params)
            return page
        with self.translated():
            return {"items": list(self.core.paginate(path, params=params)), "next_cursor": None}

    @contextlib.contextmanager
    def stream(self, path: str, **params: Any) -> Iterator[httpx.Response]:
        """A streaming GET (server-sent events); refreshes once on 401 like ``send``."""
        with self.translated(), self.core.stream(path, params=params) as response:
            yield response


# ---------------------------------------------------------------- name resolution


def resolve(client: Client, collection: str, ref: str, kind: str) -> dict[str, Any]:
    """Find one resource by id or exact name, as the server resolves it (``GET /v1/<collection>/<ref>``);
    clean errors when none matches, or when several do (the server's 409 lists their ids)."""
    try:
        found: dict[str, Any] = client.get(f"/v1/{collection}/{quote(ref, safe='')}")
        return found
    except ApiError as exc:
        if exc.status == 404:
            raise CliError(
                f"no {kind} named '{ref}' (and no {kind} with that id)",
                hint=f"List them with: novacron {kind} list",
            ) from exc
        candidates = exc.problem.get("candidates")
        if exc.status == 409 and isinstance(candidates, list):
            ids = ", ".join(str(c) for c in candidates)
            raise CliError(f"{len(candidates)} {kind}s are named '{ref}': {ids}", hint=exc.hint) from exc
        raise
