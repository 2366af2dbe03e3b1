"""HTTPS by default on the API listener: the platform CA's certificate or the operator's, HSTS on
every TLS answer, plain HTTP refused off loopback, and the CLI logging in over verified HTTPS.

Real parts: ``novacron-server`` processes (simulated compute, no tenant networks: nothing here
needs a guest), real TLS handshakes, the ``novacron`` CLI as a subprocess.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import Server, destroy_server, free_port, make_server, short_tmpdir

LIGHT = {"NOVACRON_COMPUTE_DRIVER": "simulated", "NOVACRON_NETWORK_BACKEND": "none"}


def default_server(**env: str) -> Server:
    """A server as a fresh install runs it: no NOVACRON_PLAIN_HTTP at all."""
    srv = make_server(**LIGHT, **env)
    del srv.env["NOVACRON_PLAIN_HTTP"]
    return srv


@pytest.fixture(scope="module")
def tls_server() -> Iterator[Server]:
    srv = default_server()
    srv.start()
    try:
        yield srv
    finally:
        destroy_server(srv)


def peer_chain(port: int, ca_file: Path) -> tuple[x509.Certificate, x509.Certificate]:
    """(the certificate the listener presents, the CA it verified against) after a verifying handshake."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der), x509.load_pem_x509_certificate(ca_file.read_bytes())


def test_default_server_is_https_with_the_platform_ca_and_hsts(tls_server: Server) -> None:
    assert tls_server.url.startswith("https://")
    leaf, ca = peer_chain(tls_server.port, tls_server.ca_file)
    assert leaf.issuer == ca.subject
    leaf.verify_directly_issued_by(ca)
    r = httpx.get(f"{tls_server.url}/healthz", verify=tls_server.verify)
    assert r.status_code == 200
    assert r.headers["strict-transport-security"].startswith("max-age=")
    assert r.headers["x-content-type-options"] == "nosniff"
    # an error answer and the dashboard carry them too
    r = httpx.get(f"{tls_server.url}/v1/vms", verify=tls_server.verify)
    assert r.status_code == 401 and "max-age=" in r.headers["strict-transport-security"]
    # a client that does not trust the platform CA is refused the handshake: no silent fallback
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.url}/healthz", verify=ssl.create_default_context())
    # and nothing answers plain HTTP on the port
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{tls_server.port}/healthz", timeout=3)


def test_agent_listener_keeps_the_platform_ca_and_sends_hsts(tls_server: Server) -> None:
    agent_port = int(tls_server.env["NOVACRON_AGENT_PORT"])
    leaf, ca = peer_chain(agent_port, tls_server.ca_file)
    assert leaf.issuer == ca.subject
    r = httpx.get(f"https://127.0.0.1:{agent_port}/healthz", verify=tls_server.verify)
    assert r.status_code == 200 and "max-age=" in r.headers["strict-transport-security"]


def test_plain_http_on_loopback_has_no_hsts(server: Server) -> None:
    r = httpx.get(f"{server.url}/healthz")
    assert server.url.startswith("http://") and r.status_code == 200
    assert "strict-transport-security" not in r.headers
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_plain_http_is_refused_off_loopback(host: str) -> None:
    state = short_tmpdir()
    port = free_port()
    env = {
        **os.environ,
        **LIGHT,
        "NOVACRON_STATE_DIR": str(state),
        "NOVACRON_LISTEN_HOST": host,
        "NOVACRON_LISTEN_PORT": str(port),
        "NOVACRON_AGENT_PORT": str(free_port()),
        "NOVACRON_PLAIN_HTTP": "1",
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "novacron.server"], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode != 0
        assert "NOVACRON_PLAIN_HTTP=1 is allowed only on a loopback listen address" in done.stderr
        assert "NOVACRON_LISTEN_HOST" in done.stderr and "Traceback" not in done.stderr
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        # refused before it made any state: no database, no keys
        assert not (state / "novacron.db").exists()
    finally:
        subprocess.run(["rm", "-rf", str(state)], check=False)


def _operator_pki(where: Path) -> tuple[Path, Path, Path]:
    """An operator's own CA and a server certificate for 127.0.0.1: (ca, cert, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Operator test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "novacron.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = where / "op-ca.crt", where / "op.crt", where / "op.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    paths[2].chmod(0o600)
    return paths


def test_operator_certificate_is_served_when_configured() -> None:
    files = short_tmpdir("op")
    ca, cert, key = _operator_pki(files)
    srv = default_server(
        NOVACRON_TLS_CERT=str(cert), NOVACRON_TLS_KEY=str(key), NOVACRON_TEST_CA_FILE=str(ca)
    )
    srv.start()
    try:
        leaf, operator_ca = peer_chain(srv.port, ca)
        leaf.verify_directly_issued_by(operator_ca)
        assert leaf.subject.rfc4514_string() == "CN=novacron.test"
        with srv.client() as admin:
            assert admin.get("/v1/vms").status_code == 200
        # the platform CA does not vouch for it ...
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{srv.url}/healthz", verify=ssl.create_default_context(cafile=str(srv.ca_file)))
        # ... but still for the agent listener: agents pin the platform CA
        agent_leaf, platform_ca = peer_chain(int(srv.env["NOVACRON_AGENT_PORT"]), srv.ca_file)
        assert agent_leaf.issuer == platform_ca.subject
    finally:
        destroy_server(srv)
        subprocess.run(["rm", "-rf", str(files)], check=False)


def test_operator_certificate_that_does_not_load_is_named() -> None:
    files = short_tmpdir("op")
    _, cert, _ = _operator_pki(files)
    srv = default_server(NOVACRON_TLS_CERT=str(cert), NOVACRON_TLS_KEY=str(files / "missing.key"))
    try:
        with pytest.raises(RuntimeError, match="NOVACRON_TLS_KEY"):
            srv.start(timeout_s=30)
    finally:
        destroy_server(srv)
        subprocess.run(["rm", "-rf", str(files)], check=False)


def _cli(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "novacron.cli.main", *args],
        input=stdin,
        env={**os.environ, **env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_logs_in_over_https_with_the_platform_ca(tls_server: Server, tmp_path: Path) -> None:
    env = {"NOVACRON_CONFIG": str(tmp_path / "creds.json"), "NOVACRON_STATE_DIR": str(tmp_path / "no-node")}
    password = tls_server.admin_password + "\n"
    # without the CA the certificate does not verify: a clear refusal, never a silent downgrade
    r = _cli("login", "--server", tls_server.url, "--password-stdin", env=env, stdin=password)
    assert r.returncode == 2 and "does not verify" in r.stderr and "--ca-file" in r.stderr, r.stderr
    assert not (tmp_path / "creds.json").exists()
    ca = str(tls_server.ca_file)
    r = _cli(
        "login", "--server", tls_server.url, "--ca-file", ca, "--password-stdin", env=env, stdin=password
    )
    assert r.returncode == 0, r.stderr
    # the CA is remembered with the server: later commands verify without being told again
    r = _cli("whoami", "--json", env=env)
    assert r.returncode == 0 and '"admin"' in r.stdout, r.stderr
    # a node on this machine: its CA is read from the local state directory
    local = {"NOVACRON_CONFIG": str(tmp_path / "local.json"), "NOVACRON_STATE_DIR": str(tls_server.state_dir)}
    r = _cli("login", "--server", tls_server.url, "--password-stdin", env=local, stdin=password)
    assert r.returncode == 0, r.stderr
    assert _cli("vm", "list", env=local).returncode == 0
