"""Bridges (issue 16) over TLS, with the test CA of tests/tlspki.py: the remote
mosquitto has a TLS listener that requires a client certificate.
bridge_cafile, bridge_certfile, bridge_keyfile, bridge_insecure,
bridge_tls_version; a wrong CA is refused with the reason in the log.
"""

import os

import pytest

from bridgekit import (Client, StdinProcess, bridge_block, bridging, nodes, up_out)  # noqa: F401
from conftest import free_port
from tlspki import PSK_IDENTITY, PSK_KEY, _leaf, pki  # noqa: F401 (pki is a fixture)

pytestmark = pytest.mark.hato_only("starts mosquitto and hato itself, both as bridges")


def tls_remote(nodes, pki, cert="server", extra=""):
    """A mosquitto with a plain listener (for the test's clients) and a TLS one
    (for the bridge) that requires a client certificate from the test CA."""
    tls_port = free_port()
    conf = (f"listener {tls_port} 127.0.0.1\ncafile {pki['ca.crt']}\n"
            f"certfile {pki[cert + '.crt']}\nkeyfile {pki[cert + '.key']}\n"
            f"require_certificate true\n{extra}")
    remote = nodes.start("mosquitto", conf, name="remote")
    remote.tls_port = tls_port
    return remote


def tls_block(remote, pki, ca="ca.crt", extra="", host="127.0.0.1"):
    return bridge_block(remote, topics=["t/# out 1"], address=f"{host}:{remote.tls_port}",
                        extra=(f"bridge_cafile {pki[ca]}\nbridge_certfile {pki['client.crt']}\n"
                               f"bridge_keyfile {pki['client.key']}\n{extra}"))


def test_bridge_cafile_certfile_keyfile(nodes, bridging, pki):
    remote = tls_remote(nodes, pki)
    local = nodes.start(bridging, tls_block(remote, pki), name="local")
    rsub = up_out(local, remote)
    Client(local).publish("t/x", "over-tls", qos=1)
    rsub.wait_payload("over-tls")


def test_bridge_without_client_certificate_refused(nodes, bridging, pki):
    remote = tls_remote(nodes, pki)
    block = bridge_block(remote, topics=["t/# out 1"], address=f"127.0.0.1:{remote.tls_port}",
                         extra=f"bridge_cafile {pki['ca.crt']}\n")
    nodes.start(bridging, block, name="local")
    remote.wait_log(r"(?i)peer did not return a certificate|certificate required|"
                    r"OpenSSL Error", timeout=20)


def test_bridge_cafile_wrong_ca_refused(nodes, bridging, pki):
    """bridge_cafile of another CA: the server certificate does not verify;
    the bridging broker logs why and does not connect."""
    remote = tls_remote(nodes, pki)
    local = nodes.start(bridging, tls_block(remote, pki, ca="other-ca.crt"), name="local")
    local.wait_log(r"(?i)certificate verify failed", timeout=20)
    assert "bridge-b1" not in remote.log.replace("$SYS/broker/connection/bridge-b1", "")


@pytest.fixture(scope="module")
def misnamed(pki):
    """A server certificate from the test CA for another name (wrong.example)."""
    d = os.path.dirname(pki["ca.crt"])
    if not os.path.exists(os.path.join(d, "misnamed.crt")):
        _leaf(d, "ca", "misnamed", "wrong.example", "DNS:wrong.example")
    return dict(pki, **{"misnamed.crt": os.path.join(d, "misnamed.crt"),
                        "misnamed.key": os.path.join(d, "misnamed.key")})


def test_bridge_insecure_false_checks_hostname(nodes, bridging, misnamed):
    remote = tls_remote(nodes, misnamed, cert="misnamed")
    local = nodes.start(bridging, tls_block(remote, misnamed), name="local")
    local.wait_log(r"(?i)certificate verify failed|hostname mismatch|host name", timeout=20)


def test_bridge_insecure_true_skips_hostname(nodes, bridging, misnamed):
    remote = tls_remote(nodes, misnamed, cert="misnamed")
    local = nodes.start(bridging, tls_block(remote, misnamed, extra="bridge_insecure true\n"),
                        name="local")
    rsub = up_out(local, remote)
    Client(local).publish("t/x", "insecure", qos=1)
    rsub.wait_payload("insecure")


def test_bridge_tls_version_tlsv13(nodes, bridging, pki):
    """bridge_tls_version tlsv1.3 against a remote listener that requires TLS 1.3
    (mosquitto's tls_version is the lowest version allowed)."""
    remote = tls_remote(nodes, pki, extra="tls_version tlsv1.3\n")
    local = nodes.start(bridging, tls_block(remote, pki, extra="bridge_tls_version tlsv1.3\n"),
                        name="local")
    rsub = up_out(local, remote)
    Client(local).publish("t/x", "tls13", qos=1)
    rsub.wait_payload("tls13")


def test_bridge_tls_version_refuses_older_server(nodes, bridging, pki):
    """bridge_tls_version tlsv1.3 towards a server that speaks TLS 1.2 at most
    (`openssl s_server -tls1_2`): the handshake fails and the reason is logged."""
    port = free_port()
    server = StdinProcess(["openssl", "s_server", "-tls1_2", "-accept", f"127.0.0.1:{port}",
                            "-cert", pki["server.crt"], "-key", pki["server.key"]])
    try:
        server.wait_log(r"^ACCEPT", timeout=20)

        class Addr:
            host = "127.0.0.1"
            tls_port = port
        nodes.start(bridging, tls_block(Addr(), pki, extra="bridge_tls_version tlsv1.3\n"),
                    name="local")
        server.wait_log(r"(?i)protocol version|no protocols available|unsupported protocol",
                        timeout=20)
        local = nodes.started[-1]
        local.wait_log(r"(?i)protocol version|OpenSSL Error|handshake", timeout=20)
    finally:
        server.kill()


def test_bridge_identity_bridge_psk(nodes, bridging, pki):
    """bridge_identity / bridge_psk: TLS with a pre-shared key instead of certificates."""
    tls_port = free_port()
    remote = nodes.start("mosquitto", f"listener {tls_port} 127.0.0.1\npsk_hint hato-test\n"
                         f"psk_file {pki['psk.txt']}\n", name="remote")
    block = bridge_block(remote, topics=["t/# out 1"], address=f"127.0.0.1:{tls_port}",
                         extra=f"bridge_identity {PSK_IDENTITY}\nbridge_psk {PSK_KEY}\n")
    local = nodes.start(bridging, block, name="local")
    rsub = up_out(local, remote)
    Client(local).publish("t/x", "psk", qos=1)
    rsub.wait_payload("psk")
