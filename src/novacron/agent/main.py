"""``novacron agent``: run a node agent on this host and join it to a NovaCron server over HTTPS.

First run: fetch the platform CA, check it against the fingerprint printed with the join token
(so the first contact cannot be intercepted), spend the join token for a node credential, and
keep both in the state directory (mode 0600). Later runs reuse them; the join token is not
needed again. A credential revoked by an operator is refused at once and the agent exits.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import tempfile
from pathlib import Path

import httpx

from novacron.agent.control import AgentRefused, HttpControlPlane
from novacron.agent.hoststats import HostSampler
from novacron.agent.runtime import AgentRuntime
from novacron.config import Settings
from novacron.identity.pki import ca_fingerprint
from novacron.private import harden_once, mkdir_private, write_private

log = logging.getLogger(__name__)


class JoinFailed(Exception):
    pass


def _fetch_ca(server: str, expected_fingerprint: str) -> bytes:
    # the CA is public; what makes it trusted is the fingerprint the operator passed along
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    r = httpx.get(f"{server}/v1/agents/ca", verify=context, timeout=30)
    if r.status_code != 200:
        raise JoinFailed(f"{server} did not hand out its CA (HTTP {r.status_code})")
    pem = r.content
    if ca_fingerprint(pem) != expected_fingerprint:
        raise JoinFailed(
            f"the server's CA is {ca_fingerprint(pem)}, not {expected_fingerprint}: refusing to join "
            "(wrong server, or someone in between)"
        )
    return pem


def ensure_joined(
    state_dir: Path, server: str, name: str, join_token: str | None, fingerprint: str | None
) -> dict[str, str]:
    """The stored node identity, joining first when there is none."""
    identity_file = state_dir / "agent.json"
    ca_file = state_dir / "ca.crt"
    if identity_file.exists() and ca_file.exists():
        return dict(json.loads(identity_file.read_text()))
    if not join_token or not fingerprint:
        raise JoinFailed("this host has not joined yet: pass --join-token and --ca-fingerprint")
    ca_pem = _fetch_ca(server, fingerprint)
    mkdir_private(state_dir)
    write_private(ca_file, ca_pem)
    r = httpx.post(
        f"{server}/v1/agents/join",
        json={"join_token": join_token, "name": name},
        verify=ssl.create_default_context(cafile=str(ca_file)),
        timeout=30,
    )
    if r.status_code != 200:
        raise JoinFailed(f"join refused ({r.status_code}): {r.json().get('detail', r.text)}")
    identity = {"server": server, "name": name, **r.json()}
    fd, tmp = tempfile.mkstemp(dir=state_dir)
    with os.fdopen(fd, "w") as f:
        json.dump(identity, f)
    os.chmod(tmp, 0o600)
    os.replace(tmp, identity_file)
    return identity


async def run_agent(
    settings: Settings, server: str, name: str, join_token: str | None, fingerprint: str | None
) -> None:
    from novacron.network import make_backend
    from novacron.virt import make_driver

    settings.ensure_dirs()
    harden_once(settings.state_dir, [p for p in (settings.shared_storage_dir,) if p is not None])
    identity = ensure_joined(settings.state_dir, server, name, join_token, fingerprint)
    # agents sharing one kernel (tests, labs) must not share tap device names
    extra = {"tap_salt": name} if settings.compute_driver == "qemu" else {}
    driver = make_driver(settings.compute_driver, settings, **extra)
    control = HttpControlPlane(
        identity["server"],
        identity["credential"],
        settings.state_dir / "ca.crt",
        name,
        driver.name,
        settings.images_dir,
    )
    runtime = AgentRuntime(
        driver,
        control,
        settings.metrics_interval_s,
        settings.migration_address,
        settings.run_dir,
        underlay_ip=settings.underlay_ip,
        network=make_backend(settings, scope=name),
    )
    runtime.host_sampler = HostSampler(settings.state_dir, settings.run_dir)
    await runtime.start()
    log.info("agent of host %s (%s) joined %s", name, control.host_id, server)
    try:
        await runtime.run_forever()
    except AgentRefused as exc:
        if exc.status == 401:
            raise JoinFailed(
                "the control plane refused this host's credential (revoked?); join again"
            ) from exc
        raise
