"""Consoles (serial, and the graphical one over VNC): who may open one, and the relay sessions
of consoles on other hosts.

A console of a VM on another host is relayed: this process opens a session, asks the host's
agent (a ``console_attach`` operation) to dial back with it, and joins the two ends. The
transport (WebSockets) is the API's; the sessions and the checks are here.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from novacron.agent.protocol import ConsoleAttach
from novacron.compute import hostops
from novacron.db.models import VM
from novacron.db.resolve import resolve
from novacron.errors import Forbidden
from novacron.identity.principal import Principal

if TYPE_CHECKING:
    from novacron.context import Context

#: how long the agent of a remote host has to dial back
ATTACH_TIMEOUT_S = 15.0


@dataclass
class ConsoleRelay:
    """One relayed console: the host whose agent must dial back, and that agent's end once it has."""

    host_id: str
    #: resolved with the agent's connection when it dials back
    agent_side: asyncio.Future[Any]
    #: set when the user's end closed, so the agent's end is let go
    finished: asyncio.Event = field(default_factory=asyncio.Event)


def target(ctx: Context, principal: Principal, vm_id: str) -> tuple[str, str | None]:
    """The VM (id) whose console ``principal`` opens, and its host; blocking (database)."""
    if not principal.can("vm:console"):
        raise Forbidden("missing vm:console")
    with ctx.db.session() as s:
        vm = resolve(s, principal, VM, vm_id)
        return vm.id, vm.host_id


def open_relay(ctx: Context, host_id: str) -> tuple[str, ConsoleRelay]:
    """A new relay session (its id and relay) for a console on ``host_id``; in an event loop."""
    session = secrets.token_urlsafe(24)
    relay = ConsoleRelay(host_id, asyncio.get_running_loop().create_future())
    ctx.console_relays[session] = relay
    return session, relay


def close_relay(ctx: Context, session: str) -> None:
    """The user's end closed: let the agent's end go and forget the session."""
    relay = ctx.console_relays.pop(session, None)
    if relay is not None:
        relay.finished.set()


def waiting_relay(ctx: Context, session: str, host_id: str) -> ConsoleRelay | None:
    """The relay ``host_id``'s agent dials back to, while it waits for that agent; another host's
    session is None like an unknown one."""
    relay = ctx.console_relays.get(session)
    if relay is None or relay.host_id != host_id or relay.agent_side.done():
        return None
    return relay


def request_attach(ctx: Context, host_id: str, vm_id: str, session: str, kind: str = "serial") -> None:
    """Ask the host's agent to dial back to ``session`` with the VM's ``kind`` console ("serial" or
    "vnc"; raises StepFailed if it refuses or is silent); blocking: call it in a thread."""
    # the session id admits to the relay: under ``secrets`` it is sealed in the operation's row
    # and dropped from it once the agent answered (hostops)
    relay_url = ctx.agent_listener.relay_url if ctx.agent_listener is not None else None
    attach = ConsoleAttach(secrets={"session": session}, relay_url=relay_url, kind=kind)
    hostops.call_blocking(ctx, host_id, attach, vm_id, ATTACH_TIMEOUT_S)
