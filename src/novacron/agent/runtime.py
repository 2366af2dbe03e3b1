"""The node agent: registers its host, reports what QEMU says every second, runs queued operations.

The same code runs embedded in an all-in-one server and as ``novacron agent`` on other hosts;
only the ControlPlane it talks to differs. QEMU processes outlive the agent: a restarted agent
finds them through the driver (pidfiles, QMP sockets) and reports them as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind

from novacron.agent import protocol
from novacron.agent.control import AgentRefused, ControlPlane
from novacron.agent.guestinfo import GuestInfoCollector
from novacron.agent.handlers import handle
from novacron.agent.watchdog import Lease
from novacron.monitoring import tracing
from novacron.virt.base import ComputeDriver, InstanceSpec, PowerState, Progress

if TYPE_CHECKING:
    from novacron.agent.hoststats import HostSampler
    from novacron.agent.lbaas import LoadBalancerHost
    from novacron.agent.protocol import VmSpec
    from novacron.network.model import NetworkBackend
    from novacron.network.wire import HostState

log = logging.getLogger(__name__)
#: instances observed between two pauses when a report is spread over the interval
SLICE = 50
#: how often the agent checks its own lease
LEASE_CHECK_S = 0.2
#: operations that would run a guest: refused while the host is fenced
STARTS = ("prepare", "launch", "reboot", "resume", "migrate_receive", "migrate_finish")
#: how often protected listeners' guards look at their traffic (agent/lbaas.py)
LB_GUARD_INTERVAL_S = 1.0
#: load balancers' statistics go with a report at most this often: HAProxy renders its exporter
#: page in the worker that serves the traffic (a scrape every second showed in the requests' p99;
#: Prometheus' own default is 15 s), while member health still goes with every report
LB_METRICS_INTERVAL_S = 10.0


class AgentRuntime:
    """One host's agent: registers, reports, and runs the operations queued for its host."""

    def __init__(
        self,
        driver: ComputeDriver,
        control: ControlPlane,
        report_interval_s: float = 1.0,
        migration_address: str = "127.0.0.1",
        lease_dir: Path | None = None,
        underlay_ip: str = "",
        network: NetworkBackend | None = None,
    ) -> None:
        self.driver = driver
        #: the host's own sample sent with each report (None: only the VMs'); set by who runs the agent
        self.host_sampler: HostSampler | None = None
        #: this host's tenant-network datapath (None: the host has none)
        self.network = network
        #: what the guests say about themselves (agent/guestinfo.py), sent with the reports
        self.guest_info = GuestInfoCollector(driver, network)
        #: self-fencing (agent/watchdog.py); ``lease_dir`` is where the watchdog process finds it
        self.lease = Lease(lease_dir)
        #: the host's run directory (the lease, load balancers' sockets); None: none kept
        self.run_dir = lease_dir
        #: the load balancers placed on this host (agent/lbaas.py), made on first use
        self.load_balancers: LoadBalancerHost | None = None
        self._lb_metrics_at = -LB_METRICS_INTERVAL_S
        self.fenced = False
        #: where this host listens for incoming migrations (RAM and disk mirror)
        self.migration_address = migration_address
        #: reported at registration: the VTEP address other hosts' VXLAN tunnels reach this one at
        self.underlay_ip = underlay_ip
        self.control = control
        self.report_interval_s = report_interval_s
        self._stopping = False
        self._busy: set[str] = set()
        self._running_ops: set[asyncio.Task[None]] = set()
        self._consoles: set[asyncio.Task[None]] = set()
        #: the newest network state received: an older one still waiting for its turn is skipped
        self._newest_network_state = 0
        self._network_turn = asyncio.Lock()

    @property
    def host_id(self) -> str:
        return self.control.host_id

    async def start(self) -> None:
        await self.control.register(replace(self.driver.host_facts(), underlay_ip=self.underlay_ip))
        await self.report_once()

    async def run_forever(self) -> None:
        await asyncio.gather(
            self._report_loop(), self._work_loop(), self._lease_loop(), self._lb_guard_loop()
        )

    def stop(self) -> None:
        self._stopping = True
        self.lease.stop()

    async def _lease_loop(self) -> None:
        """Fence this host when its lease runs out, and keep it fenced until a report is accepted."""
        while not self._stopping:
            if self.lease.expired():
                if not self.fenced:
                    log.error("lease expired (no accepted report in time): hard-stopping every VM")
                    self.fenced = True
                for instance_id in self.driver.list_instances():
                    try:
                        await self.driver.power_off(instance_id)
                    except Exception:
                        log.exception("could not stop %s while fencing", instance_id)
                await asyncio.sleep(1.0)
            else:
                await asyncio.sleep(LEASE_CHECK_S)

    async def _report_loop(self) -> None:
        while not self._stopping:
            started = asyncio.get_running_loop().time()
            try:
                await self.report_once(spread=True)
            except AgentRefused as exc:
                if exc.status == 401:
                    raise  # revoked: stop at once rather than retry
                log.warning("agent report refused: %s", exc)
            except Exception:
                log.exception("agent report failed")
            elapsed = asyncio.get_running_loop().time() - started
            await asyncio.sleep(max(0.05, self.report_interval_s - elapsed))

    async def report_once(self, spread: bool = False) -> None:
        """Observe and sample every instance, then report.

        With ``spread``, a large host's sampling is cut into slices over half the interval, so an
        embedded agent never holds the server process's interpreter for long at a time.
        """
        started = time.monotonic()
        power: dict[str, str] = {}
        samples: dict[str, dict[str, Any]] = {}
        instances = self.driver.list_instances()
        slices = -(-len(instances) // SLICE)
        for n, instance_id in enumerate(instances):
            if spread and n and n % SLICE == 0:
                await asyncio.sleep(self.report_interval_s / (2 * slices))
            observation = await self.driver.observe(instance_id)
            power[instance_id] = observation.power_state.value
            if observation.power_state in (PowerState.RUNNING, PowerState.PAUSED):
                sample = await self.driver.sample(instance_id)
                if sample is not None:
                    samples[instance_id] = sample.as_dict()
        host_sample = self._host_sample()
        lb = await self.lb_report()
        self.guest_info.poll(list(samples), self._busy)
        guest = self.guest_info.take()
        if guest:  # the report's extras travel together (control.py)
            lb = {**(lb or {}), **guest}
        sent_at = time.monotonic()
        answer = await self.control.report(power, samples, sent_at - started, host_sample, lb)
        self.guest_info.accepted(guest)
        self.lease.renew(sent_at, answer.lease_s)
        if self.fenced:
            log.warning("report accepted again: this host is no longer fenced")
            self.fenced = False
        for instance_id in set(power) - answer.keep - self._busy:
            # a VM moved away (HA restart) or deleted; a disk on shared storage is its new host's
            log.warning("removing orphan instance %s (no VM of this host owns it)", instance_id)
            await self.driver.forget(instance_id)

    def _lbs(self) -> LoadBalancerHost | None:
        """This host's load balancers, when it has (or had, before a restart) any."""
        if self.load_balancers is None and self.run_dir is not None and (self.run_dir / "lb").is_dir():
            from novacron.agent.lbaas import host_load_balancers

            with contextlib.suppress(Exception):
                host_load_balancers(self)
        return self.load_balancers

    async def lb_report(self) -> dict[str, Any] | None:
        """``lb_health`` (each load balancer's member states), ``lb_bans`` (the guard's decisions
        since the last report) and ``lb_metrics`` (their statistics, every ``LB_METRICS_INTERVAL_S``)
        for the report; None without load balancers."""
        lbs = self._lbs()
        if lbs is None:
            return None
        try:
            health = await asyncio.to_thread(lbs.health)
            metrics = {}
            if time.monotonic() - self._lb_metrics_at >= LB_METRICS_INTERVAL_S:
                metrics = await asyncio.to_thread(lbs.metrics)
                self._lb_metrics_at = time.monotonic()
        except Exception:
            log.exception("could not read this host's load balancers' health")
            return None
        return {"lb_health": health, "lb_bans": lbs.take_bans(), "lb_metrics": metrics}

    async def _lb_guard_loop(self) -> None:
        """Every second, each protected listener's guard bans the sources abusing it."""
        while not self._stopping:
            lbs = self._lbs()
            if lbs is not None:
                try:
                    await asyncio.to_thread(lbs.guard)
                except Exception:
                    log.exception("load balancer guard failed")
            await asyncio.sleep(LB_GUARD_INTERVAL_S)

    def _host_sample(self) -> dict[str, Any] | None:
        if self.host_sampler is None:
            return None
        try:
            return dict(self.host_sampler.sample())
        except OSError:
            log.exception("could not sample this host")
            return None

    async def _work_loop(self) -> None:
        while not self._stopping:
            try:
                ops = await self.control.claim(wait_s=1.0)
            except AgentRefused as exc:
                if exc.status == 401:
                    raise
                log.warning("agent could not fetch operations: %s", exc)
                await asyncio.sleep(1.0)
                continue
            except Exception:
                log.exception("agent could not fetch operations")
                await asyncio.sleep(1.0)
                continue
            for op in ops:
                task = asyncio.create_task(self._run(op))
                self._running_ops.add(task)
                task.add_done_callback(self._running_ops.discard)

    async def _run(self, op: dict[str, Any]) -> None:
        instance_id = str(op["instance_id"])
        parent = op.get("traceparent")
        self._busy.add(instance_id)
        try:
            result, error = await self._traced(op, instance_id, parent)
            # a remote agent's finished spans of this trace travel with the answer
            spans = tracing.take_spans(tracing.AGENT, parent)
            await self.control.complete(str(op["id"]), result, error, spans)
        finally:
            self._busy.discard(instance_id)

    async def _traced(
        self, op: dict[str, Any], instance_id: str, parent: str | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Run ``op`` in a span continuing the trace of the step that queued it: (result, error)."""
        name = str(op["op"])
        attributes = {"novacron.op": name, "novacron.vm_id": instance_id}
        with tracing.continued(tracing.AGENT, f"agent {name}", parent, attributes, SpanKind.CONSUMER) as span:
            try:
                payload = dict(op.get("payload") or {})
                result = await self.execute(name, instance_id, payload, op_id=str(op["id"]))
            except Exception as exc:
                log.warning("operation %s on %s failed: %s", name, instance_id, exc)
                tracing.set_error(span, exc)
                return None, str(exc) or type(exc).__name__
            log.info("operation %s on %s done", name, instance_id)
            return result, None

    async def instance_spec(self, spec: VmSpec) -> InstanceSpec:
        """The driver's spec of an instance: its image's files found (or fetched) on this host."""
        # the fields the two share; the image is known by id on the wire, by its files here
        shared = {
            f.name: getattr(spec, f.name) for f in dataclasses.fields(InstanceSpec) if hasattr(spec, f.name)
        }
        image_id = spec.image_id
        return InstanceSpec(
            **shared,
            image_path=await self.control.image_path(image_id, "file", spec.image_sha256),
            kernel_path=await self.control.image_path(image_id, "kernel", None) if spec.has_kernel else None,
            initrd_path=await self.control.image_path(image_id, "initrd", None) if spec.has_initrd else None,
        )

    async def execute(
        self, op: str, instance_id: str, payload: dict[str, Any], op_id: str | None = None
    ) -> dict[str, Any]:
        """Run operation ``op`` (its payload parsed into the typed request) and answer its result."""
        if self.fenced and op in STARTS:
            raise RuntimeError(
                "this host is fenced (its lease ran out): it runs no VM until it reports again"
            )
        request = protocol.parse(op, payload)
        return await handle(self, instance_id, request, self._progress(op_id))

    async def network_sync(self, state: HostState, generation: int) -> dict[str, Any]:
        """Make this host's datapath match the whole desired ``state`` (wire.py)."""
        if self.network is None:
            raise RuntimeError("this host has no network backend (NOVACRON_NETWORK_BACKEND=none)")
        # Syncs claimed while one runs may queue in any order; each carries the whole state, so
        # only the newest matters and an older one applied last would undo it.
        self._newest_network_state = max(self._newest_network_state, generation)
        async with self._network_turn:
            if generation < self._newest_network_state:
                return {"superseded_by": self._newest_network_state}
            return await asyncio.to_thread(self.network.sync, state)

    def _progress(self, op_id: str | None) -> Progress | None:
        """A progress callback for a long operation: sends at most once a second, best effort."""
        if op_id is None:
            return None
        sent_at, cancel = 0.0, False

        async def report(detail: dict[str, Any]) -> bool:
            nonlocal sent_at, cancel
            if time.monotonic() - sent_at >= 1.0:
                sent_at = time.monotonic()
                try:
                    cancel = await self.control.progress(op_id, detail)
                except Exception as exc:  # progress is informative: the transfer goes on without it
                    log.warning("could not report the progress of %s: %s", op_id, exc)
            return cancel

        return report

    async def console_attach(
        self, instance_id: str, session: str, relay_url: str | None, kind: str = "serial"
    ) -> None:
        """Join the guest's serial (or VNC) socket to a user's console session held by a server replica.

        The agent dials out (as for every other call), so a host behind NAT or a firewall that
        only lets it reach the server still serves its consoles. Returns once both ends are open;
        the bytes flow in the background until either side closes.
        """
        socket_of = self.driver.vnc_socket if kind == "vnc" else self.driver.console_socket
        reader, writer = await asyncio.open_unix_connection(str(socket_of(instance_id)))
        try:
            channel = await self.control.console_channel(session, relay_url)
        except BaseException:
            writer.close()
            raise

        async def guest_to_server() -> None:
            while data := await reader.read(65536):
                await channel.send(data)

        async def server_to_guest() -> None:
            async for message in channel:
                writer.write(message if isinstance(message, bytes) else message.encode())
                await writer.drain()

        async def bridge() -> None:
            pumps = [asyncio.create_task(guest_to_server()), asyncio.create_task(server_to_guest())]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                writer.close()
                await channel.close()

        task = asyncio.create_task(bridge(), name=f"console:{instance_id}")
        self._consoles.add(task)
        task.add_done_callback(self._consoles.discard)

    async def drain(self) -> None:
        for task in list(self._running_ops):
            with contextlib.suppress(Exception):
                await task
