"""How an agent reaches the control plane: in-process for the all-in-one node, HTTPS otherwise.

Both implementations offer the same five calls, so the agent's logic is one and the same
whether it runs inside the server or on another machine.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import logging
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from novacron.compute import agentcalls, hostops, reports, storage
from novacron.monitoring import tracing
from novacron.virt.base import HostFacts

if TYPE_CHECKING:
    from novacron.context import Context

IMAGE_PARTS = ("file", "kernel", "initrd")
#: how long an operation's answer is sent again while the control plane cannot take it (a step
#: waits 5 minutes for most answers: past that its task has given up on it)
COMPLETE_RETRY_S = 600.0
#: how long an image download is tried again (the prepare step waiting for it gives up at 5 minutes)
FETCH_RETRY_S = 120.0

log = logging.getLogger(__name__)
ReportAnswer = reports.ReportAnswer


class ControlPlane(abc.ABC):
    host_id: str

    @abc.abstractmethod
    async def register(self, facts: HostFacts) -> str: ...

    @abc.abstractmethod
    async def report(
        self,
        power_states: dict[str, str],
        samples: dict[str, dict[str, Any]],
        age_s: float = 0.0,
        host_sample: dict[str, Any] | None = None,
        lb: dict[str, Any] | None = None,
    ) -> ReportAnswer:
        """Send observations begun ``age_s`` ago (with the host's own sample, ``agent/hoststats.py``,
        and its load balancers' ``lb_health`` and ``lb_bans``, ``agent/lbaas.py``); the answer
        names the instances this host should keep and renews its self-fencing lease."""

    @abc.abstractmethod
    async def claim(self, wait_s: float) -> list[dict[str, Any]]:
        """Operations queued for this host, waiting up to ``wait_s`` for one to arrive."""

    @abc.abstractmethod
    async def complete(
        self,
        op_id: str,
        result: dict[str, Any] | None,
        error: str | None,
        spans: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Answer an operation; ``spans``: the agent's finished spans of its trace (a remote agent's)."""

    @abc.abstractmethod
    async def image_path(self, image_id: str, part: str, sha256: str | None) -> Path:
        """A local path holding the image's ``part`` (fetched once and cached if remote)."""

    @abc.abstractmethod
    async def progress(self, op_id: str, detail: dict[str, Any]) -> bool:
        """Report a long operation's progress; answers True when the user asked to cancel it."""

    @abc.abstractmethod
    def snapshot_dest(self, image_id: str) -> Path:
        """Where to write the flattened disk of a snapshot for image ``image_id``."""

    @abc.abstractmethod
    async def snapshot_taken(self, image_id: str, path: Path) -> None:
        """The disk is written: hand it to the image store (a no-op where it already is there)."""

    async def console_channel(self, session: str, relay_url: str | None) -> ClientConnection:
        """A WebSocket to the server replica that holds a user's console ``session``."""
        raise RuntimeError("the server reaches this host's consoles directly")


class LocalControlPlane(ControlPlane):
    """The embedded agent of an all-in-one node: same database, same image store."""

    def __init__(self, ctx: Context, host_name: str, driver_name: str) -> None:
        self.ctx = ctx
        self.host_name = host_name
        self.driver_name = driver_name
        self.host_id = ""
        self._queued = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        hostops.on_queued(self._on_queued)

    def _on_queued(self, host_id: str) -> None:
        if host_id == self.host_id and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._queued.set)

    async def register(self, facts: HostFacts) -> str:
        self._loop = asyncio.get_running_loop()
        self.host_id = reports.register_host(self.ctx.db, self.host_name, self.driver_name, facts)
        hostops.requeue_unanswered(self.ctx, self.host_id)
        return self.host_id

    async def report(
        self,
        power_states: dict[str, str],
        samples: dict[str, dict[str, Any]],
        age_s: float = 0.0,
        host_sample: dict[str, Any] | None = None,
        lb: dict[str, Any] | None = None,
    ) -> ReportAnswer:
        answer = agentcalls.record_report(
            self.ctx, self.host_id, power_states, samples, age_s, host_sample, lb or {}
        )
        self.ctx.platform_metrics.heartbeat(self.host_id, self.host_name)
        return answer

    async def claim(self, wait_s: float) -> list[dict[str, Any]]:
        ops = hostops.claim(self.ctx, self.host_id)
        if not ops:
            self._queued.clear()
            try:
                async with asyncio.timeout(wait_s):  # not wait_for: it can swallow a cancel on 3.11
                    await self._queued.wait()
            except TimeoutError:
                return []
            ops = hostops.claim(self.ctx, self.host_id)
        return ops

    async def complete(
        self,
        op_id: str,
        result: dict[str, Any] | None,
        error: str | None,
        spans: Sequence[dict[str, Any]] = (),
    ) -> None:
        # the embedded agent's spans went to the trace store directly
        hostops.complete(self.ctx, self.host_id, op_id, result, error)

    async def progress(self, op_id: str, detail: dict[str, Any]) -> bool:
        return hostops.progress(self.ctx, self.host_id, op_id, detail)

    async def image_path(self, image_id: str, part: str, sha256: str | None) -> Path:
        paths = {"file": storage.image_disk, "kernel": storage.image_kernel, "initrd": storage.image_initrd}
        return paths[part](self.ctx.settings, image_id)

    def snapshot_dest(self, image_id: str) -> Path:
        return storage.image_disk(self.ctx.settings, image_id)

    async def snapshot_taken(self, image_id: str, path: Path) -> None:
        return None


class HttpControlPlane(ControlPlane):
    """A remote agent: every call is an HTTPS request authenticated by the node credential."""

    def __init__(
        self, server: str, credential: str, ca_file: Path, host_name: str, driver_name: str, images_dir: Path
    ) -> None:
        self._tls = ssl.create_default_context(cafile=str(ca_file))
        self._auth = {"Authorization": f"Bearer {credential}"}
        self.client = httpx.AsyncClient(base_url=server, verify=self._tls, timeout=60, headers=self._auth)
        self.host_name = host_name
        self.driver_name = driver_name
        self.images_dir = images_dir
        self.host_id = ""
        self._fetch_locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def _post(self, path: str, body: dict[str, Any], timeout: float | None = None) -> Any:
        r = await self.client.post(path, json=body, timeout=timeout or 60)
        if r.status_code >= 400:
            raise AgentRefused(r.status_code, r.text)
        return r.json() if r.content else None

    async def register(self, facts: HostFacts) -> str:
        body = {"driver": self.driver_name, "facts": facts_dict(facts)}
        self.host_id = str((await self._post("/v1/agent/register", body))["host_id"])
        return self.host_id

    async def report(
        self,
        power_states: dict[str, str],
        samples: dict[str, dict[str, Any]],
        age_s: float = 0.0,
        host_sample: dict[str, Any] | None = None,
        lb: dict[str, Any] | None = None,
    ) -> ReportAnswer:
        body = {"power_states": power_states, "samples": samples, "age_s": age_s, "host": host_sample}
        body.update(lb or {})
        answer = await self._post("/v1/agent/report", body)
        return ReportAnswer(set(answer["keep"]), float(answer.get("lease_s", 0.0)))

    async def claim(self, wait_s: float) -> list[dict[str, Any]]:
        answer = await self._post("/v1/agent/claim", {"wait_s": wait_s}, timeout=wait_s + 30)
        return list(answer["operations"])

    async def complete(
        self,
        op_id: str,
        result: dict[str, Any] | None,
        error: str | None,
        spans: Sequence[dict[str, Any]] = (),
    ) -> None:
        body: dict[str, Any] = {"id": op_id, "result": result, "error": error}
        if spans:
            body["spans"] = list(spans)
        # the answer is the only record of what the host did: a server down, restarting or failing
        # over loses it unless it is sent again (the step waiting for it resumes on the new server)
        await _through_outages(f"answer to {op_id}", COMPLETE_RETRY_S, self._post, "/v1/agent/complete", body)

    async def progress(self, op_id: str, detail: dict[str, Any]) -> bool:
        answer = await self._post("/v1/agent/progress", {"id": op_id, "detail": detail})
        return bool(answer["cancel"])

    async def image_path(self, image_id: str, part: str, sha256: str | None) -> Path:
        dest = self.images_dir / image_id / part
        # concurrent creates from one image fetch it once
        async with self._fetch_locks.setdefault((image_id, part), asyncio.Lock()):
            if not dest.exists():  # a server restarting mid-download: fetched again once it is back
                await _through_outages(
                    f"{part} of image {image_id}", FETCH_RETRY_S, self._fetch, image_id, part, sha256, dest
                )
        return dest

    def snapshot_dest(self, image_id: str) -> Path:
        scratch = self.images_dir / ".snapshots"
        scratch.mkdir(parents=True, exist_ok=True)
        return scratch / f"{image_id}.img"

    async def snapshot_taken(self, image_id: str, path: Path) -> None:
        digest = await asyncio.to_thread(_sha256_of, path)

        async def chunks() -> AsyncIterator[bytes]:
            with path.open("rb") as f:
                while chunk := await asyncio.to_thread(f.read, 1 << 20):
                    yield chunk

        try:
            r = await self.client.put(
                f"/v1/agent/snapshots/{image_id}",
                content=chunks(),
                headers={"Content-Type": "application/octet-stream", "X-Checksum-SHA256": digest},
                timeout=1800,
            )
            if r.status_code >= 400:
                raise AgentRefused(r.status_code, r.text)
        finally:
            path.unlink(missing_ok=True)

    async def console_channel(self, session: str, relay_url: str | None) -> ClientConnection:
        # the replica holding the user's socket, when it said where it listens; any replica
        # presents a certificate of the one platform CA, so the pinned trust still holds
        base = (relay_url or str(self.client.base_url)).rstrip("/")
        url = "wss://" + base.removeprefix("https://") + f"/v1/agent/console/{session}"
        return await connect(url, ssl=self._tls, additional_headers=self._auth, open_timeout=10)

    async def _fetch(self, image_id: str, part: str, sha256: str | None, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{part}.{os.getpid()}.part")
        digest = hashlib.sha256()
        try:
            # within the operation's trace: the server's span of the download joins it
            parent = tracing.traceparent()
            headers = {"traceparent": parent} if parent else None
            url = f"/v1/images/{image_id}/{part}"
            async with self.client.stream("GET", url, timeout=600, headers=headers) as r:
                if r.status_code != 200:
                    raise AgentRefused(r.status_code, f"cannot fetch {part} of image {image_id}")
                with tmp.open("wb") as f:
                    async for chunk in r.aiter_bytes():
                        digest.update(chunk)
                        f.write(chunk)
            if part == "file" and sha256 and digest.hexdigest() != sha256:
                raise AgentRefused(502, f"image {image_id} arrived corrupted (sha256 mismatch)")
            tmp.rename(dest)
        finally:
            tmp.unlink(missing_ok=True)


async def _through_outages(what: str, limit_s: float, call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """``call(*args)``, made again (backing off up to 5 s) while the control plane is unreachable or
    answers 5xx, for at most ``limit_s``; a 4xx is an answer and is raised at once."""
    delay, deadline = 0.5, time.monotonic() + limit_s
    while True:
        try:
            return await call(*args)
        except (httpx.TransportError, AgentRefused) as exc:
            transient = not isinstance(exc, AgentRefused) or exc.status >= 500
            if not transient or time.monotonic() + delay > deadline:
                raise
            log.warning("%s not through (%s): again in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class AgentRefused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"control plane answered {status}: {detail[:300]}")
        self.status = status


def facts_dict(facts: HostFacts) -> dict[str, Any]:
    return {
        "cpus": facts.cpus,
        "cpu_model": facts.cpu_model,
        "cpu_flags": sorted(facts.cpu_flags),
        "ram_mb": facts.ram_mb,
        "disk_gb": facts.disk_gb,
        "accelerator": facts.accelerator,
        "shared_storage": facts.shared_storage,
        "underlay_ip": facts.underlay_ip,
        "nic_traits": list(facts.nic_traits),
    }


def facts_of(data: dict[str, Any]) -> HostFacts:
    return HostFacts(
        cpus=int(data["cpus"]),
        cpu_model=str(data.get("cpu_model", "")),
        cpu_flags=frozenset(data.get("cpu_flags", [])),
        ram_mb=int(data["ram_mb"]),
        disk_gb=int(data.get("disk_gb", 0)),
        accelerator=str(data["accelerator"]),
        shared_storage=str(data.get("shared_storage", "")),
        underlay_ip=str(data.get("underlay_ip", "")),
        nic_traits=tuple(str(t) for t in data.get("nic_traits", ())),
    )
