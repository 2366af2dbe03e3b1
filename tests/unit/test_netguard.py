"""The egress guard: its judgement of addresses with the real resolver, and pinned HTTPS."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest

from novacron import netguard
from novacron.config import Settings

DENIED = [
    "http://127.0.0.1/", "http://2130706433/", "http://0x7f.1/", "http://017700000001/", "http://127.1/",
    "http://localhost/", "http://[::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/",
    "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/", "http://10.0.0.1/", "http://172.16.0.1/",
    "http://192.168.1.1/", "http://[fc00::1]/", "http://[fd12:3456::1]/", "http://100.64.0.1/",
    "http://0.0.0.0/", "http://[::]/", "http://224.0.0.1/", "http://[ff02::1]/", "http://198.18.0.1/",
    "http://240.0.0.1/", "http://255.255.255.255/", "http://192.0.2.1/", "http://[2001:db8::1]/",
    "http://[64:ff9b::a9fe:a9fe]/", "http://[2002:7f00:1::]/", "http://name.invalid/",
    "ftp://93.184.216.34/", "file:///etc/passwd", "gopher://93.184.216.34/", "http:///nohost",
    "http://93.184.216.34:99999/",
]  # fmt: skip


@pytest.mark.parametrize("url", DENIED)
def test_inside_addresses_in_every_spelling_are_refused(url: str) -> None:
    with pytest.raises(netguard.EgressDenied):
        netguard.check_url(url, netguard.EgressPolicy())


@pytest.mark.parametrize("url", ["http://93.184.216.34/disk.img", "https://[2606:4700::1111]:8443/x"])
def test_public_addresses_pass(url: str) -> None:
    target = netguard.check_url(url, netguard.EgressPolicy())
    assert str(target.address) in url and target.pinned_url().host == str(target.address)


def test_allow_list_opens_ranges_but_never_this_host() -> None:
    own = next(a for a in netguard.host_addresses() if not a.is_loopback)
    net = ipaddress.ip_network(f"{own}/{24 if own.version == 4 else 64}", strict=False)
    policy = netguard.EgressPolicy(allow=(net, ipaddress.ip_network("10.0.5.0/24")))
    assert netguard.check_url("http://10.0.5.7:8000/img", policy).port == 8000
    with pytest.raises(netguard.EgressDenied, match="platform itself"):
        netguard.check_url(f"http://{ipaddress.ip_address(own) if own.version == 4 else f'[{own}]'}/", policy)
    with pytest.raises(netguard.EgressDenied):
        netguard.check_url("http://10.0.6.7/", policy)


def test_setting_parses_and_names_a_bad_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOVACRON_EGRESS_ALLOW", "10.0.5.0/24, fd00:5::/64")
    assert [str(n) for n in Settings.from_env().egress_allow] == ["10.0.5.0/24", "fd00:5::/64"]
    monkeypatch.setenv("NOVACRON_EGRESS_ALLOW", "10.0.5.0/24,intranet")
    with pytest.raises(ValueError, match="intranet"):
        Settings.from_env()


def test_the_platforms_listen_address_is_its_own() -> None:
    settings = Settings(state_dir=Path("/tmp"), database_url="", listen_host="93.184.216.34")
    policy = netguard.EgressPolicy.from_settings(settings)
    assert policy.refusal(ipaddress.ip_address("93.184.216.34")) == "an address of the platform itself"


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "c.pem").write_bytes(pem)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "k.pem").write_bytes(key_pem)
    return tmp_path / "c.pem", tmp_path / "k.pem", pem


def _tls_origin(tmp_path: Path, name: str) -> tuple[ssl.SSLContext, int, HTTPServer]:
    """An HTTPS server on loopback whose self-signed certificate names only ``name``."""
    cert, key, pem = _self_signed(tmp_path, name)
    server = HTTPServer(("127.0.0.1", 0), _Hello)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return ssl.create_default_context(cadata=pem.decode()), server.server_port, server


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{self.headers['Host']}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_pinned_https_keeps_sni_and_certificate_check_on_the_name(tmp_path: Path) -> None:
    client_ctx, port, server = _tls_origin(tmp_path, "images.example.test")
    loopback = ipaddress.ip_address("127.0.0.1")

    async def get(name: str) -> str:
        target = netguard.Target(f"https://{name}:{port}/", "https", name, port, loopback)
        client, response = await netguard.send_to(target, "GET", 5, verify=client_ctx)
        try:
            return (await response.aread()).decode()
        finally:
            await response.aclose()
            await client.aclose()

    try:
        assert asyncio.run(get("images.example.test")) == f"images.example.test:{port}"
        with pytest.raises(httpx.ConnectError, match="certificate|hostname"):
            asyncio.run(get("other.example.test"))  # same address, a name the certificate lacks
    finally:
        server.shutdown()
        server.server_close()
