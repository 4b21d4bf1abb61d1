"""WITH_EC (docs/building.md): a build with elliptic curves negotiates ECDHE/X25519 as
OpenSSL does by default; a -DWITH_EC=OFF build offers finite-field groups (RFC 7919) and DHE
suites only, and refuses a client that can only do elliptic curves. Probed with `openssl
s_client` against a real TLS listener; whichever way HATO_BIN was built, the test checks that
build's promise."""

import os
import subprocess

import pytest

from conftest import HATO_BIN
from tlspki import pki  # noqa: F401 (fixture)


def built_with(part):
    out = subprocess.run([HATO_BIN, "-h"], capture_output=True, text=True, timeout=30).stdout
    return part in out.split("Built with:")[1].split(".")[0].split()


pytestmark = pytest.mark.skipif(not os.path.exists(HATO_BIN) or not built_with("TLS"),
                                reason="built without TLS")


def handshake(port, pki, *opts):
    """True when s_client completes a handshake with these options."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                        "-CAfile", pki["ca.crt"], "-verify_return_error", "-brief", *opts],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    return r.returncode == 0 and "CONNECTION ESTABLISHED" in r.stderr


@pytest.fixture
def tls_broker(broker_factory, pki):
    return broker_factory(f"certfile {pki['server.crt']}\nkeyfile {pki['server.key']}\n")


def test_tls13_groups(tls_broker, pki):
    p = tls_broker.port
    assert handshake(p, pki, "-tls1_3", "-groups", "ffdhe2048")
    assert handshake(p, pki, "-tls1_3", "-groups", "X25519") == built_with("EC")
    assert handshake(p, pki, "-tls1_3", "-groups", "P-256") == built_with("EC")


def test_tls12_suites(tls_broker, pki):
    p = tls_broker.port
    assert handshake(p, pki, "-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256")
    assert handshake(p, pki, "-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256") == \
        built_with("EC")
