"""TLS on the HAProxy data plane seen from a client (tests/integration/lblab.py namespaces).

TERMINATED_HTTPS serves each certificate by SNI and a default one without SNI; a certificate
replaced through the runtime API reaches new handshakes while a looping client sees no failure
and HAProxy is not reloaded; HTTP listeners answer ACME HTTP-01 tokens put at run time; and a
certificate issued by pebble (Let's Encrypt's test ACME server) through HTTP-01 answered by the
load balancer itself is served, verified against pebble's root, and renewed without a failed
request (tests/integration/pebblelab.py runs pebble).
"""

from __future__ import annotations

import dataclasses
import json
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from novacron.errors import InvalidInput, Unavailable
from novacron.lbaas.acme import AcmeClient, AcmeDirectory, issue_certificate, renew, renew_if_due
from novacron.lbaas.haproxy import HAProxyInstance
from novacron.lbaas.model import ListenerSpec, LoadBalancerSpec, MemberSpec, PoolSpec
from tests.conftest import require
from tests.integration.lblab import LbLab, haproxy_lab
from tests.integration.pebblelab import Pebble, have_pebble
from tests.tlsca import TestCA

HTTPS = 443
HTTP = 80

#: TLS requests from the client namespace, each a new handshake: ``count`` of them, or until the
#: stop file exists; prints {"seen": [[fingerprint, times], ...], "ok": n, "failed": [...]}
TLS_CLIENT = """
import hashlib, json, os, socket, ssl, sys
host, port, cafile, sni, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[6]
count = int(sys.argv[5])
ctx = ssl.create_default_context(cafile=cafile)
if not sni:
    ctx.check_hostname = False  # without SNI there is no name to check; the chain still is
seen, ok, failed, bodies, n = [], 0, [], [], 0
while (n < count) if stop == "-" else not os.path.exists(stop):
    n += 1
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=sni or None) as tls:
                print_ = hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()
                tls.sendall(b"GET / HTTP/1.0\\r\\nHost: " + (sni or host).encode() + b"\\r\\n\\r\\n")
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
        head, _, body = data.partition(b"\\r\\n\\r\\n")
        if not head.startswith(b"HTTP/1.0 200") and not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head[:60].decode(errors="replace"))
        ok += 1
        bodies.append(body.decode().split()[0])
        if seen and seen[-1][0] == print_:
            seen[-1][1] += 1
        else:
            seen.append([print_, 1])
    except Exception as e:
        failed.append(type(e).__name__ + ": " + str(e))
print(json.dumps({"seen": seen, "ok": ok, "failed": failed, "members": sorted(set(bodies))}))
"""


class TlsClient:
    """TLS requests to the VIP from the lab's client namespace, trusting ``cafile``."""

    def __init__(self, lab: LbLab, cafile: Path) -> None:
        self.lab = lab
        self.cafile = cafile

    def _argv(self, sni: str, count: int, stop: str, port: int) -> list[str]:
        script = ["ip", "netns", "exec", self.lab.client, sys.executable, "-c", TLS_CLIENT]
        return [*script, self.lab.vip, str(port), str(self.cafile), sni, str(count), stop]

    def get(self, sni: str, count: int = 1, port: int = HTTPS) -> dict[str, Any]:
        proc = subprocess.run(self._argv(sni, count, "-", port), capture_output=True, text=True, timeout=120)
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def fingerprints(self, sni: str, count: int = 1) -> list[str]:
        result = self.get(sni, count)
        assert result["failed"] == [], result
        return [fingerprint for fingerprint, _ in result["seen"]]

    def loop(self, sni: str, port: int = HTTPS) -> tuple[subprocess.Popen[str], Path]:
        stop = self.lab.workdir / f"stop-{uuid.uuid4().hex[:6]}"
        proc = subprocess.Popen(self._argv(sni, 0, str(stop), port), stdout=subprocess.PIPE, text=True)
        self.lab.loopers.append(proc)
        return proc, stop


def finish(loop: tuple[subprocess.Popen[str], Path]) -> dict[str, Any]:
    proc, stop = loop
    stop.touch()
    out, _ = proc.communicate(timeout=60)
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.fixture
def lab() -> Iterator[tuple[LbLab, HAProxyInstance]]:
    with haproxy_lab("nctls", members=2) as made:
        yield made


def tls_spec(lab: LbLab, default: str, sni: tuple[str, ...] = ()) -> LoadBalancerSpec:
    members = tuple(MemberSpec(m, lab.addresses[m], 80) for m in ("m1", "m2"))
    return LoadBalancerSpec(
        id="lb-tls",
        vip_address=lab.vip,
        listeners=(
            ListenerSpec("http", "HTTP", HTTP, default_pool_id="web"),
            ListenerSpec(
                "https",
                "TERMINATED_HTTPS",
                HTTPS,
                default_pool_id="web",
                default_tls_container_ref=default,
                sni_container_refs=sni,
            ),
        ),
        pools=(PoolSpec("web", members=members),),
    )


def _test_ca(net: LbLab) -> tuple[TestCA, Path]:
    """A CA made for the test, and its certificate's file (what the clients trust)."""
    ca = TestCA.create()
    cafile = net.workdir / "ca.pem"
    cafile.write_text(ca.pem)
    return ca, cafile


def test_each_name_gets_its_certificate_by_sni_and_clients_without_sni_the_default(
    lab: tuple[LbLab, HAProxyInstance],
) -> None:
    net, instance = lab
    ca, cafile = _test_ca(net)
    www = instance.put_certificate("cert-www", ca.bundle(["www.example.test"]))
    api = instance.put_certificate("cert-api", ca.bundle(["api.example.test", "*.api.example.test"]))
    instance.apply(tls_spec(net, "cert-www", ("cert-api",)))
    client = TlsClient(net, cafile)

    assert client.fingerprints("www.example.test", 2) == [www.fingerprint_sha256]
    assert client.fingerprints("api.example.test", 2) == [api.fingerprint_sha256]
    assert client.fingerprints("v2.api.example.test") == [api.fingerprint_sha256]
    # no SNI: the listener's default certificate
    assert client.fingerprints("") == [www.fingerprint_sha256]
    result = client.get("api.example.test", 6)
    assert result["ok"] == 6 and result["members"] == ["m1", "m2"], result

    # a listener naming a certificate never put is refused and the running one keeps serving;
    # its crt-list is the running configuration's again, so a reload serves as before
    running = instance.spec
    with pytest.raises(InvalidInput, match="absent.pem"):
        instance.apply(tls_spec(net, "absent", ("cert-api",)))
    assert running is not None and instance.spec == running
    crt_list = (instance.paths.certs_dir / "https.crtlist").read_text().split()
    assert [Path(line).name for line in crt_list] == ["cert-www.pem", "cert-api.pem"]
    instance.apply(running)
    assert client.fingerprints("") == [www.fingerprint_sha256]
    assert client.fingerprints("api.example.test") == [api.fingerprint_sha256]


def test_a_certificate_replaced_at_run_time_drops_no_request_and_needs_no_reload(
    lab: tuple[LbLab, HAProxyInstance],
) -> None:
    net, instance = lab
    ca, cafile = _test_ca(net)
    old = instance.put_certificate("cert-www", ca.bundle(["www.example.test"]))
    instance.apply(tls_spec(net, "cert-www"))
    client = TlsClient(net, cafile)
    workers = instance._workers()
    loop = client.loop("www.example.test")
    time.sleep(0.5)  # the client is under way before the replacement

    # an agent restarted since the apply finds the running HAProxy again by its state directory
    found_again = HAProxyInstance(instance.paths.state_dir, netns=net.lb)
    new = found_again.put_certificate("cert-www", ca.bundle(["www.example.test"]))
    assert new.serial != old.serial
    assert client.fingerprints("www.example.test") == [new.fingerprint_sha256]
    time.sleep(0.3)  # the looping client makes handshakes with the new certificate too
    result = finish(loop)

    assert result["failed"] == [], result
    assert [fingerprint for fingerprint, _ in result["seen"]] == [
        old.fingerprint_sha256,
        new.fingerprint_sha256,
    ]
    assert instance._workers() == workers  # no reload: the same worker serves
    # the file was replaced too: the next start or reload serves the new certificate
    assert instance.certificate("cert-www").serial == new.serial
    instance.apply(tls_spec(net, "cert-www"))
    assert client.fingerprints("www.example.test") == [new.fingerprint_sha256]


def test_http_listeners_answer_acme_challenges_put_at_run_time(lab: tuple[LbLab, HAProxyInstance]) -> None:
    net, instance = lab
    ca = TestCA.create()
    instance.put_certificate("cert-www", ca.bundle(["www.example.test"]))
    instance.apply(tls_spec(net, "cert-www"))
    token = "Tok3n_" + uuid.uuid4().hex
    answer = f"{token}.{'k' * 43}"
    path = f"/.well-known/acme-challenge/{token}"

    instance.put_challenge(token, answer)
    assert net.get(net.vip, HTTP, path) == [(200, answer)]
    instance.remove_challenge(token)
    # an unknown token is the application's business: the request reaches a member
    status, body = net.get(net.vip, HTTP, path)[0]
    assert status == 200 and body.split()[1] == path


class Unanswered:
    """A challenge responder that serves nothing."""

    def put_challenge(self, token: str, key_authorization: str) -> None:
        pass

    def remove_challenge(self, token: str) -> None:
        pass


def http_only(lab: LbLab) -> LoadBalancerSpec:
    spec = tls_spec(lab, "unused")
    return dataclasses.replace(spec, listeners=spec.listeners[:1])


def test_pebble_issues_a_certificate_proved_by_the_load_balancer_and_it_renews_without_a_failure(
    lab: tuple[LbLab, HAProxyInstance],
) -> None:
    require(have_pebble(), "needs pebble and pebble-challtestsrv (scripts/setup.sh installs pebble)")
    net, instance = lab
    pebble = Pebble(net)
    try:
        pebble.start()
        instance.apply(http_only(net))
        account = net.workdir / "tenant-1" / "acme-account.key"
        acme = AcmeClient(AcmeDirectory(pebble.directory_url, ca_bundle=str(pebble.tls_ca)), account)
        name = "shop.example.com"

        issued = issue_certificate(acme, instance, "cert-shop", [name])
        assert issued.names == (name,)
        assert stat.S_IMODE(account.stat().st_mode) == 0o600
        assert instance.acme_map.read_text() == ""  # the challenges were withdrawn
        instance.apply(tls_spec(net, "cert-shop"))
        root = net.workdir / "pebble-root.pem"
        root.write_text(pebble.issuing_root())
        client = TlsClient(net, root)  # verifies the chain and the name against pebble's root
        assert client.fingerprints(name, 2) == [issued.fingerprint_sha256]

        assert renew_if_due(acme, instance, "cert-shop", days_before=1) is None  # not yet time
        loop = client.loop(name)
        time.sleep(0.5)  # the client is under way before the renewal
        renewed = renew(acme, instance, "cert-shop")
        assert renewed.serial != issued.serial
        assert client.fingerprints(name) == [renewed.fingerprint_sha256]
        result = finish(loop)
        # both orders were validated by pebble fetching the token from the load balancer
        assert pebble.log().count("set VALID by completed challenge") == 2

        # a load balancer that does not answer the challenge gets no certificate
        with pytest.raises(Unavailable, match="ACME validation of other.example.com failed"):
            acme.issue(["other.example.com"], Unanswered())
    finally:
        pebble.stop()
    assert result["failed"] == [], result
    assert [f for f, _ in result["seen"]] == [issued.fingerprint_sha256, renewed.fingerprint_sha256]
