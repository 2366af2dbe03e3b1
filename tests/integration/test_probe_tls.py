"""HTTPS probes verify the target's certificate: chain (the system's CAs or the probe's own) and
name (the probe's ``tls_server_name``, else the address), unless the probe says not to.

The target is a real TLS server on loopback with a certificate from a CA made here; the check runs
as the agent runs it (``checks.run_here``, minus the namespace). The API refuses TLS settings that
cannot work, naming the field.
"""

from __future__ import annotations

import datetime as dt
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from novacron.monitoring.slo.checks import Check, run_here
from tests.conftest import in_process_app

NAME = "web.tenant.example"


def _cert(
    subject: str, issuer_key: ec.EllipticCurvePrivateKey | None, issuer: str | None, ca: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    return key, builder.sign(issuer_key or key, hashes.SHA256())


class _Hello(BaseHTTPRequestHandler):
    hosts: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.hosts.append(self.headers.get("Host", ""))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str]]:
    """A TLS server on 127.0.0.1 whose certificate names NAME; its port and its CA's PEM."""
    ca_key, ca = _cert("Tenant CA", None, None, ca=True)
    key, cert = _cert(NAME, ca_key, "Tenant CA", ca=False)
    workdir = tmp_path_factory.mktemp("tls")
    (workdir / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (workdir / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(workdir / "cert.pem", workdir / "key.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], ca.public_bytes(serialization.Encoding.PEM).decode()
    finally:
        server.shutdown()
        server.server_close()


def _https(port: int, **tls: object) -> Check:
    return Check("https", "127.0.0.1", port, body_contains="hello", timeout_s=5.0, **tls)  # type: ignore[arg-type]


def test_a_certificate_is_verified_by_chain_and_name(target: tuple[int, str]) -> None:
    port, ca_pem = target
    ok = run_here(_https(port, tls_ca_pem=ca_pem, tls_server_name=NAME))
    assert ok.success, ok.error
    assert _Hello.hosts[-1] == f"{NAME}:{port}"  # the name, not the address, is the Host asked for

    unknown_ca = run_here(_https(port, tls_server_name=NAME))
    assert not unknown_ca.success
    assert "unable to get local issuer certificate" in (unknown_ca.error or "")
    assert "tls_ca_pem" in (unknown_ca.error or "")  # what to do next

    for wrong_name in (None, "other.tenant.example"):
        failed = run_here(_https(port, tls_ca_pem=ca_pem, tls_server_name=wrong_name))
        assert not failed.success
        assert "mismatch" in (failed.error or "") and "tls_server_name" in (failed.error or "")


def test_verification_off_checks_reachability_and_the_answer_only(target: tuple[int, str]) -> None:
    port, _ca = target
    outcome = run_here(_https(port, tls_verify=False))
    assert outcome.success, outcome.error
    assert not run_here(Check("https", "127.0.0.1", port, body_contains="absent", tls_verify=False)).success


def test_the_api_refuses_tls_settings_that_cannot_work(tmp_path: Path) -> None:
    with in_process_app(tmp_path) as (admin, password, _db):
        r = admin.post("/v1/tokens", json={"username": "admin", "password": password})
        admin.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        base = {"name": "web", "vm_id": "web", "target_port": 443}
        cases = {
            "tls_ca_pem": {**base, "kind": "https", "tls_ca_pem": "not a certificate"},
            "tls_server_name": {**base, "kind": "tcp", "tls_server_name": NAME},
            "tls_verify": {**base, "kind": "https", "tls_verify": False, "tls_server_name": NAME},
        }
        for field, body in cases.items():
            r = admin.post("/v1/probes", json=body)
            assert r.status_code == 422, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert field in r.text, r.text
