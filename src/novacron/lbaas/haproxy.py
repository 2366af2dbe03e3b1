"""The load-balancer data-plane seam, and its HAProxy implementation.

:class:`LoadBalancerDriver` is everything the platform asks of the process that serves one load
balancer: ``apply`` a desired state (start or reload), change a member at run time without a
reload, read member health and statistics, ``stop``, and for TLS put and read certificates and
ACME HTTP-01 answers. Every method is idempotent, because the task that calls it may run its step
again after a crash.

:class:`HAProxyInstance` runs Debian's HAProxy in master-worker mode inside the load balancer's
network namespace (``ip netns exec``), daemonised with a pid file, so it outlives the agent that
started it and the next agent finds it again through its sockets. Its state directory (0700) holds
``haproxy.cfg`` (0600), the master socket (``reload``, ``show proc``), the admin socket (the
runtime API: ``set server``, ``show stat``) and the saved server state. A new configuration is
always checked with ``haproxy -c`` first; a reload goes through the master socket and keeps the
listening sockets, so no client connection is refused.

The desired state stays the source of truth: ``set_member`` changes the running HAProxy and the
instance's :attr:`~HAProxyInstance.spec` alike, so rendering that spec again (the next ``apply``)
keeps the change.

TLS: ``put_certificate`` checks a PEM bundle (:mod:`novacron.lbaas.certificates`) and writes it
as ``certs/<id>.pem`` (0600); when the running HAProxy serves that certificate it is replaced in
place through the runtime API (``set ssl cert`` + ``commit ssl cert``): no reload, no connection
dropped, new handshakes get the new certificate. ``put_challenge`` / ``remove_challenge`` keep
the ACME HTTP-01 answers in a map file that HTTP listeners serve, changed at run time with
``add map`` / ``del map``; the files on disk always match, so the next start or reload has them.

Abuse protection (:mod:`novacron.lbaas.protection`): ``ban`` / ``unban`` / ``bans`` change and
read a protected listener's ban table through the runtime API (HAProxy ends each ban itself), and
``guard`` reads the listener's stick table and bans the sources :func:`novacron.lbaas.guard.decide`
picks, for the agent to call every second; ``metrics`` gives the bans made and running and the
synproxy's counters in Prometheus' text format, for the agent's report. A reload starts with
empty tables, so ``apply`` puts the running bans back after it. What HAProxy cannot do is done by
the namespace's kernel, also in ``apply`` once HAProxy serves the new configuration: the synproxy
of the listeners protected from SYN floods (:mod:`novacron.lbaas.synproxy`) and the listeners'
bandwidth limits (:mod:`novacron.lbaas.qos`); both need the load balancer's own namespace.

The calls block (a few milliseconds on a socket, up to the reload timeout); the agent runs them in
a worker thread.
"""

from __future__ import annotations

import abc
import csv
import dataclasses
import io
import math
import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from novacron.errors import InvalidInput, Unavailable
from novacron.lbaas import exporter, haproxy_config, qos, runtime_changes, synproxy
from novacron.lbaas.certificates import CertificateInfo, parse_bundle
from novacron.lbaas.exporter import LbSample
from novacron.lbaas.guard import (
    Ban,
    BanDecision,
    BanKind,
    SourceRow,
    decide,
    display_address,
    guard_samples,
    parse_bans,
    parse_table,
    table_key,
)
from novacron.lbaas.haproxy_config import Paths, certificate_path, name
from novacron.lbaas.model import LoadBalancerSpec, MemberSpec
from novacron.lbaas.protection import MAX_BAN_S, ListenerProtection, ban_table
from novacron.private import mkdir_private, write_private

MemberState = Literal["ready", "drain", "maint"]
HAPROXY = "/usr/sbin/haproxy"
MASTER_SOCKET = "master.sock"
PID_FILE = "haproxy.pid"
CONFIG = "haproxy.cfg"
#: ``show servers state``: be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state
#: srv_uweight srv_iweight ... (at least this many columns on a server's line)
_STATE_COLUMNS = 9
#: srv_admin_state's "maintenance from the configuration" flag (``disabled``)
_ADMIN_CONFIG_MAINT = 0x04
#: an ACME token and key authorization (RFC 8555 section 8.1): base64url, joined by a dot
_ACME_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_KEY_AUTHORIZATION = re.compile(r"^[A-Za-z0-9_-]{16,128}\.[A-Za-z0-9_-]{43}$")
#: how long a start or reload may take before it is reported as failed
READY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class MemberStat:
    """One member as HAProxy's ``show stat`` reports it. ``status`` is HAProxy's: UP, DOWN,
    MAINT, DRAIN, NOLB or ``no check``, with transitions such as ``UP 1/3`` while a check
    sequence is under way."""

    pool_id: str
    member_id: str
    status: str
    weight: int
    current_sessions: int
    total_sessions: int
    check_status: str


class LoadBalancerDriver(abc.ABC):
    """What the platform asks of one load balancer's data plane on a host."""

    @abc.abstractmethod
    def apply(self, spec: LoadBalancerSpec) -> None:
        """Serve ``spec``: start the data plane, or change the running one without dropping a
        connection. An invalid configuration leaves the running one untouched and raises."""

    @abc.abstractmethod
    def set_member(
        self, pool_id: str, member_id: str, *, weight: int | None = None, state: MemberState | None = None
    ) -> MemberSpec:
        """Change a member's weight and/or state (ready, drain, maint) at run time; returns it."""

    @abc.abstractmethod
    def stats(self) -> list[MemberStat]:
        """Every member's health and counters."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop serving; nothing of the load balancer runs afterwards."""

    @abc.abstractmethod
    def put_certificate(self, cert_id: str, pem_bundle: str) -> CertificateInfo:
        """Store certificate ``cert_id`` (PEM: certificate, chain, key) after checking it; a
        certificate being served is replaced without a reload or a dropped connection."""

    @abc.abstractmethod
    def certificate(self, cert_id: str) -> CertificateInfo:
        """The stored certificate ``cert_id``."""

    @abc.abstractmethod
    def put_challenge(self, token: str, key_authorization: str) -> None:
        """Answer ACME HTTP-01 ``token`` on the HTTP listeners, at run time."""

    @abc.abstractmethod
    def remove_challenge(self, token: str) -> None:
        """Stop answering ACME HTTP-01 ``token`` (idempotent)."""

    def member_health(self) -> dict[tuple[str, str], str]:
        """``(pool_id, member_id)`` → HAProxy's status (UP, DOWN, MAINT, ...); DOWN while not checked
        yet (``INI``: a new server starts UP), so ONLINE means a check passed."""
        rows = [(s, s.status[:2] == "UP" and s.check_status.lstrip("* ") == "INI") for s in self.stats()]
        return {(s.pool_id, s.member_id): "DOWN (not checked yet)" if ini else s.status for s, ini in rows}


def check_config(checker: Sequence[str], candidate: Path, config: str) -> subprocess.CompletedProcess[str]:
    """Run an engine's own configuration check (``checker`` + the file) on ``config``, written
    privately to ``candidate`` for the check only."""
    write_private(candidate, config)
    try:
        return subprocess.run([*checker, str(candidate)], capture_output=True, text=True, timeout=30)
    finally:
        candidate.unlink(missing_ok=True)


def _ask(path: Path, command: str, timeout: float = 5.0) -> str:
    """One command on an HAProxy CLI socket; the answer is everything up to the socket's close."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            sock.sendall(command.encode() + b"\n")
            # the master CLI answers and closes only once the request side is closed
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError as exc:
            raise Unavailable(f"HAProxy socket {path.name}: {exc}") from exc
    return b"".join(chunks).decode(errors="replace")


def _runtime_ok(answer: str, command: str) -> None:
    """The runtime API answers nothing (or a notice) on success, a sentence on refusal."""
    text = answer.strip()
    if text and not text.lower().startswith(("done", "no need to change")):
        raise Unavailable(f"HAProxy refused {command!r}: {text}")


def _ban_key(source: str) -> str:
    try:
        return table_key(source)
    except ValueError:
        raise InvalidInput("source", "must be an IPv4 or IPv6 address") from None


def carry_health(state: str, spec: LoadBalancerSpec) -> str:
    """``show servers state`` with only the health kept: weights and admin state (maintenance)
    become those ``spec`` renders, so the desired state wins over earlier run-time changes, and
    members no longer in ``spec`` are left out."""
    servers = {
        (name(p.id), name(m.id)): (0 if m.drain else m.weight, m.admin_state_up)
        for p in spec.pools
        for m in p.members
    }
    kept = []
    for line in state.splitlines():
        fields = line.split(" ")
        if line.startswith("#") or len(fields) < _STATE_COLUMNS:
            kept.append(line)
            continue
        desired = servers.get((fields[1], fields[3]))
        if desired is None:
            continue
        weight, up = desired
        fields[6] = "0" if up else str(_ADMIN_CONFIG_MAINT)
        fields[7] = fields[8] = str(weight)
        kept.append(" ".join(fields))
    return "\n".join(kept) + "\n"


class HAProxyInstance(LoadBalancerDriver):
    """One load balancer's HAProxy, in network namespace ``netns`` (None: this namespace),
    with its files under ``state_dir`` (keep it short: socket paths are limited to 107 bytes),
    its workers running as ``user``."""

    def __init__(
        self, state_dir: Path, netns: str | None = None, user: str | None = "haproxy", haproxy: str = HAPROXY
    ) -> None:
        self.paths = Paths(state_dir=state_dir, certs_dir=state_dir / "certs")
        self.netns = netns
        #: the account the workers run as (Debian's package creates ``haproxy``); None: root
        self.user = user
        self.haproxy = haproxy
        #: the desired state last applied, with the run-time changes made since
        self.spec: LoadBalancerSpec | None = None
        #: why each (listener id, source) was banned (HAProxy's table holds only the end)
        self._ban_reasons: dict[tuple[str, str], str] = {}
        #: the guard's bans since this instance was made, by (listener id, rule)
        self.ban_counts: Counter[tuple[str, BanKind]] = Counter()

    @property
    def master_socket(self) -> Path:
        return self.paths.state_dir / MASTER_SOCKET

    @property
    def admin_socket(self) -> Path:
        return self.paths.state_dir / haproxy_config.ADMIN_SOCKET

    @property
    def acme_map(self) -> Path:
        return self.paths.state_dir / haproxy_config.ACME_MAP

    def _in_netns(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)

    def check(self, config: str) -> None:
        """Raise InvalidInput with HAProxy's own words when ``config`` is not valid."""
        candidate = self.paths.state_dir / (CONFIG + ".new")
        proc = check_config([self.haproxy, "-c", "-f"], candidate, config)
        if proc.returncode != 0:
            alerts = [line for line in proc.stderr.splitlines() if "ALERT" in line]
            raise InvalidInput(
                "configuration", "; ".join(alerts) or proc.stderr.strip() or "rejected by haproxy -c"
            )

    def apply(self, spec: LoadBalancerSpec) -> None:
        if self.netns is None and (synproxy.protected_ports(spec) or qos.shaped(spec)):
            raise InvalidInput("protection", "SYN-flood protection and bandwidth limits need a namespace")
        mkdir_private(self.paths.state_dir)
        mkdir_private(self.paths.certs_dir)
        mkdir_private(self.paths.state_dir / haproxy_config.JAIL)
        config = haproxy_config.render(spec, self.paths, self.user)
        self._write_crt_lists(spec)
        if not self.acme_map.exists():
            write_private(self.acme_map, "")
        try:
            self.check(config)
        except InvalidInput:
            if self.spec is not None:
                self._write_crt_lists(self.spec)  # the running configuration's, for its next reload
            raise
        running = self.running()
        if running and runtime_changes.apply_in_place(self, spec, config, CONFIG):
            return
        bans = self.bans() if running and self.spec is not None else []
        if running:
            self._save_server_state(spec)
        write_private(self.paths.state_dir / CONFIG, config)
        if running:
            self._reload()
            for server in runtime_changes.joining(self.spec, spec):  # serving once checked
                self._runtime(f"set server {server} health down")
        else:
            write_private(self.paths.state_dir / haproxy_config.SERVER_STATE, "")
            self._start()
        self.spec = spec
        self._restore_bans(bans)
        self._apply_kernel(spec)

    def _apply_kernel(self, spec: LoadBalancerSpec) -> None:
        """The namespace's synproxy and bandwidth classes, as ``spec``'s listeners ask."""
        if self.netns is None:
            return
        links = qos.leg_links(self.netns)
        synproxy.apply(self.netns, spec, min((link.mtu for link in links), default=1500))
        qos.apply(self.netns, spec, links)

    def _write_crt_lists(self, spec: LoadBalancerSpec) -> None:
        for path, text in haproxy_config.crt_lists(spec, self.paths).items():
            write_private(path, text)

    def running(self) -> bool:
        """The master answers on its socket."""
        try:
            _ask(self.master_socket, "show proc", timeout=2.0)
        except Unavailable:
            return False
        return True

    def _start(self) -> None:
        self.master_socket.unlink(missing_ok=True)
        argv = [
            self.haproxy,
            "-W",
            "-D",
            "-S",
            f"{self.master_socket},mode,600",
            "-p",
            str(self.paths.state_dir / PID_FILE),
            "-f",
            str(self.paths.state_dir / CONFIG),
        ]
        proc = subprocess.run(self._in_netns(argv), capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise Unavailable(f"HAProxy did not start: {proc.stderr.strip()}")
        self._wait_workers(previous=set())

    def _workers(self) -> set[int]:
        """Pids of the current workers (``show proc``'s worker lines before the old workers)."""
        answer = _ask(self.master_socket, "show proc")
        current: set[int] = set()
        for line in answer.splitlines():
            if line.startswith("# old workers"):
                break
            fields = line.split()
            if len(fields) >= 2 and fields[1] == "worker" and fields[0].isdigit():
                current.add(int(fields[0]))
        return current

    def _wait_workers(self, previous: set[int]) -> None:
        """Wait until a worker that was not among ``previous`` serves (and answers the runtime API)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                workers = self._workers()
                if workers and not workers & previous:
                    _ask(self.admin_socket, "show info", timeout=2.0)
                    return
            except Unavailable:
                pass
            time.sleep(0.05)
        raise Unavailable("HAProxy's new worker did not come up (see its configuration check)")

    def _reload(self) -> None:
        previous = self._workers()
        _ask(self.master_socket, "reload")
        self._wait_workers(previous)

    def _save_server_state(self, spec: LoadBalancerSpec) -> None:
        """The members' health, for the next worker (``load-server-state-from-file``)."""
        state = _ask(self.admin_socket, "show servers state")
        write_private(self.paths.state_dir / haproxy_config.SERVER_STATE, carry_health(state, spec))

    def set_member(
        self, pool_id: str, member_id: str, *, weight: int | None = None, state: MemberState | None = None
    ) -> MemberSpec:
        spec = self._applied()
        pool = spec.pool(pool_id)
        member = pool.member(member_id)
        changed = dataclasses.replace(
            member,
            weight=member.weight if weight is None else weight,
            drain=member.drain if state is None else state == "drain",
            admin_state_up=member.admin_state_up if state is None else state != "maint",
        )
        server = f"{name(pool_id)}/{name(member_id)}"
        if weight is not None or state == "ready":
            # a drained member is rendered with weight 0: ready gives it its weight back
            self._runtime(f"set server {server} weight {changed.weight}")
        if state is not None:
            self._runtime(f"set server {server} state {state}")
        members = tuple(changed if m.id == member_id else m for m in pool.members)
        pools = tuple(dataclasses.replace(p, members=members) if p.id == pool_id else p for p in spec.pools)
        self.spec = dataclasses.replace(spec, pools=pools)
        return changed

    def _runtime(self, command: str) -> None:
        _runtime_ok(_ask(self.admin_socket, command), command)

    def _applied(self) -> LoadBalancerSpec:
        if self.spec is None:
            raise Unavailable("the load balancer has no applied configuration")
        return self.spec

    def stats(self) -> list[MemberStat]:
        spec = self._applied()
        ids = {(name(p.id), name(m.id)): (p.id, m.id) for p in spec.pools for m in p.members}
        answer = _ask(self.admin_socket, "show stat")
        rows = csv.DictReader(io.StringIO(answer.lstrip("# ")))
        found = []
        for row in rows:
            key = ids.get((row.get("pxname", ""), row.get("svname", "")))
            if key is None:
                continue
            found.append(
                MemberStat(
                    pool_id=key[0],
                    member_id=key[1],
                    status=row.get("status", ""),
                    weight=int(row.get("weight") or 0),
                    current_sessions=int(row.get("scur") or 0),
                    total_sessions=int(row.get("stot") or 0),
                    check_status=row.get("check_status", ""),
                )
            )
        return found

    def put_certificate(self, cert_id: str, pem_bundle: str) -> CertificateInfo:
        """When the running HAProxy serves ``cert_id``, it is replaced there through the runtime
        API first, then on disk. A bad bundle raises InvalidInput naming the field; nothing is
        changed then."""
        info = parse_bundle(pem_bundle)
        mkdir_private(self.paths.state_dir)
        mkdir_private(self.paths.certs_dir)
        path = certificate_path(self.paths, cert_id)
        if self._serves(path):
            self._replace_certificate(path, info.pem)
        write_private(path, info.pem)
        return info

    def certificate(self, cert_id: str) -> CertificateInfo:
        try:
            pem = certificate_path(self.paths, cert_id).read_text()
        except FileNotFoundError:
            raise InvalidInput("cert_id", f"no certificate {cert_id} on this load balancer") from None
        return parse_bundle(pem)

    def _serves(self, path: Path) -> bool:
        """The running HAProxy has loaded the certificate file (``show ssl cert`` lists it); asked
        of HAProxy rather than of :attr:`spec`, so an agent that found a running instance again
        replaces what it serves."""
        try:
            loaded = _ask(self.admin_socket, "show ssl cert", timeout=2.0)
        except Unavailable:
            return False  # not running: the file is read at the next start
        return str(path) in loaded.splitlines()

    def _replace_certificate(self, path: Path, pem: str) -> None:
        """``set ssl cert`` opens a transaction with the new bundle (the payload ends at the
        blank line), ``commit ssl cert`` swaps it in for new handshakes."""
        answer = _ask(self.admin_socket, f"set ssl cert {path} <<\n{pem}")
        if "Transaction" not in answer:
            raise Unavailable(f"HAProxy refused the certificate {path.name}: {answer.strip()}")
        answer = _ask(self.admin_socket, f"commit ssl cert {path}")
        if "Success!" not in answer:
            _ask(self.admin_socket, f"abort ssl cert {path}")
            raise Unavailable(f"HAProxy could not commit the certificate {path.name}: {answer.strip()}")

    def _challenges(self) -> dict[str, str]:
        if not self.acme_map.exists():
            return {}
        return dict(line.split(" ", 1) for line in self.acme_map.read_text().splitlines() if " " in line)

    def _write_challenges(self, challenges: dict[str, str]) -> None:
        mkdir_private(self.paths.state_dir)
        write_private(self.acme_map, "".join(f"{k} {v}\n" for k, v in challenges.items()))

    def put_challenge(self, token: str, key_authorization: str) -> None:
        if not _ACME_TOKEN.match(token):
            raise InvalidInput("token", "must be 16-128 base64url characters")
        if not _KEY_AUTHORIZATION.match(key_authorization):
            raise InvalidInput("key_authorization", "must be <token>.<account key thumbprint>")
        challenges = self._challenges()
        known = token in challenges
        challenges[token] = key_authorization
        self._write_challenges(challenges)
        if self.running():
            verb = "set" if known else "add"
            self._runtime(f"{verb} map {self.acme_map} {token} {key_authorization}")

    def remove_challenge(self, token: str) -> None:
        challenges = self._challenges()
        if challenges.pop(token, None) is None:
            return
        self._write_challenges(challenges)
        if self.running():
            self._runtime(f"del map {self.acme_map} {token}")

    def _protected(self, listener_id: str) -> ListenerProtection:
        listener = next((li for li in self._applied().listeners if li.id == listener_id), None)
        if listener is None or listener.protection is None:
            raise InvalidInput("listener_id", f"listener {listener_id} has no protection")
        return listener.protection

    def ban(self, listener_id: str, source: str, seconds: int, reason: str = "") -> Ban:
        """Refuse ``source``'s connections to the listener for ``seconds``, at run time: HAProxy
        itself ends the ban (:mod:`novacron.lbaas.protection`); banning again sets a new end."""
        self._protected(listener_id)
        key = _ban_key(source)
        if not 1 <= seconds <= MAX_BAN_S:
            raise InvalidInput("seconds", f"must be from 1 to {MAX_BAN_S}")
        # HAProxy compares whole seconds: rounding up keeps the source out at least ``seconds``
        until = math.ceil(time.time()) + seconds
        self._set_ban(listener_id, key, until, reason)
        return Ban(listener_id, display_address(key), seconds, until, reason)

    def _set_ban(self, listener_id: str, key: str, until: int, reason: str) -> None:
        self._runtime(f"set table {ban_table(name(listener_id))} key {key} data.gpt0 {until}")
        self._ban_reasons[(listener_id, display_address(key))] = reason

    def unban(self, listener_id: str, source: str) -> None:
        """Lift ``source``'s ban on the listener (idempotent)."""
        self._protected(listener_id)
        key = _ban_key(source)
        self._runtime(f"clear table {ban_table(name(listener_id))} key {key}")
        self._ban_reasons.pop((listener_id, display_address(key)), None)

    def bans(self, listener_id: str | None = None) -> list[Ban]:
        """The running bans (of one listener, or of all), with the seconds left of each."""
        listeners = [li.id for li in self._applied().listeners if li.protection is not None]
        found = []
        for lid in listeners if listener_id is None else [listener_id]:
            self._protected(lid)
            answer = _ask(self.admin_socket, f"show table {ban_table(name(lid))}")
            for ban in parse_bans(lid, answer, time.time()):
                found.append(dataclasses.replace(ban, reason=self._ban_reasons.get((lid, ban.source), "")))
        return found

    def _restore_bans(self, bans: list[Ban]) -> None:
        """A reload starts with empty tables: the bans of listeners still protected go back in."""
        protected = {li.id for li in self._applied().listeners if li.protection is not None}
        for ban in bans:
            if ban.listener_id in protected:
                self._set_ban(ban.listener_id, table_key(ban.source), ban.until, ban.reason)

    def sources(self, listener_id: str) -> list[SourceRow]:
        """Each source the listener tracks, with its rates and open connections."""
        self._protected(listener_id)
        return parse_table(_ask(self.admin_socket, f"show table {name(listener_id)}"))

    def guard(self) -> list[BanDecision]:
        """Ban the sources the traffic shows abusing a protected listener
        (:func:`novacron.lbaas.guard.decide`); the decisions, with the numbers behind them."""
        decisions = []
        for listener in self._applied().listeners:
            if listener.protection is None:
                continue
            banned = {ban.source for ban in self.bans(listener.id)}
            rows = self.sources(listener.id)
            for decision in decide(listener.id, listener.protection, rows, banned):
                self.ban(listener.id, decision.source, decision.ban_seconds, decision.reason)
                self.ban_counts[(listener.id, decision.kind)] += 1
                decisions.append(decision)
        return decisions

    def metrics(self) -> list[LbSample]:
        """HAProxy's statistics (its exporter, :mod:`novacron.lbaas.exporter`) with the guard's
        and the synproxy's counters."""
        spec = self._applied()
        syn = synproxy.counters(self.netns) if self.netns and synproxy.protected_ports(spec) else None
        guard = guard_samples(spec.id, self.ban_counts, self.bans(), syn)
        return exporter.scrape(self.paths.state_dir, spec) + guard

    def _master_pid(self) -> int | None:
        try:
            pid = int((self.paths.state_dir / PID_FILE).read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            return None
        return pid if b"haproxy" in cmdline else None

    def stop(self) -> None:
        pid = self._master_pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + READY_TIMEOUT_S
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.05)
            if Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)
        for leftover in (self.master_socket, self.admin_socket, self.paths.state_dir / PID_FILE):
            leftover.unlink(missing_ok=True)
        self.spec = None
