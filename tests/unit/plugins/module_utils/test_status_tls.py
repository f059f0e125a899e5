# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An https status endpoint: certificates are verified unless the task says otherwise.

The server is a loopback TLS server in this process, with a self-signed certificate made for
127.0.0.1 by the test, so the only thing wrong with it is that nobody trusts its issuer.
"""

import datetime
import ipaddress
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.prairiefyre.updater.plugins.module_utils import status as st
from ansible_collections.prairiefyre.updater.plugins.modules import ivr_port_status

STATUS = {
    "service": "IVR Inbound",
    "version": "6.3.1.0",
    "ports_total": 2,
    "ports_busy": 1,
    "ports": [
        {"port": 1, "busy": True, "call_seconds": 42.0},
        {"port": 2, "busy": False, "call_seconds": 0.0},
    ],
    "mode": "open",
}


def self_signed(directory):
    """Write a key and a certificate for 127.0.0.1 signed by itself; return their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "prairiefyre test IVR")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class StatusHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        data = json.dumps(STATUS).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # A proxy from the environment would carry the loopback requests off this machine.
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def https_url(tmp_path):
    """A loopback https server that answers GET /status; yields its base URL."""
    cert_path, key_path = self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    server = ThreadingHTTPServer(("127.0.0.1", 0), StatusHandler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.bad_input
def test_an_untrusted_certificate_is_refused_by_default(https_url):
    client = st.StatusClient("IVR Inbound", st.HttpSource("IVR Inbound", https_url, timeout=5))

    with pytest.raises(st.StatusError) as caught:
        client.query()

    message = str(caught.value)
    assert message.startswith(
        f"IVR Inbound at {https_url}/status: the server's certificate is not trusted (self"
    )
    assert message.endswith(
        "); add its CA to the trusted CAs of the host that asks, or set validate_certs to false "
        "to accept any certificate"
    )


def test_validate_certs_false_accepts_the_certificate(https_url):
    source = st.HttpSource("IVR Inbound", https_url, validate_certs=False, timeout=5)

    outcome = st.StatusClient("IVR Inbound", source).query()

    assert outcome.msg == (
        "IVR Inbound: 1/2 ports busy (port 1), longest call 42 s; mode open, version 6.3.1.0"
    )


@pytest.mark.parametrize(
    ("options", "failed", "msg_start"),
    [
        ({}, True, "IVR Inbound at {url}/status: the server's certificate is not trusted"),
        ({"validate_certs": False}, False, "IVR Inbound: 1/2 ports busy (port 1)"),
    ],
)
def test_the_module_verifies_unless_told_not_to(https_url, run_module, options, failed, msg_start):
    args = {"service": "IVR Inbound", "url": https_url, "timeout": 5, **options}

    result = run_module(ivr_port_status, args)

    assert result["failed"] is failed
    assert result["msg"].startswith(msg_start.format(url=https_url))
