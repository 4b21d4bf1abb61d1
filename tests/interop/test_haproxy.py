"""hato behind Debian's haproxy with the PROXY protocol (haproxy's
proxy-protocol.txt; Mosquitto 2.1's enable_proxy_protocol and
proxy_protocol_v2_require_tls): haproxy started by the test on free loopback
ports sends v1 (send-proxy), v2 (send-proxy-v2) or v2 with the client
certificate's CN (send-proxy-v2-ssl-cn) after terminating TLS itself.

The MQTT client connects from 127.0.0.3 and haproxy reaches hato from
127.0.0.2 (`source` on its server line), so the broker's log tells the
proxy's address from the client's, and both from a direct client's
127.0.0.1. Section numbers are those of proxy-protocol.txt as Debian ships it
(2.1 v1, 2.2 v2, 2.2.3 CRC32C, 2.2.6 the SSL TLV).
"""

import os
import re
import shutil
import struct
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import free_port
from mqttraw import RawClient, connect, publish, subscribe
import mqttraw
from tlspki import pki  # noqa: F401 (fixture)

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
pytestmark = pytest.mark.skipif(not os.access(HAPROXY, os.X_OK),
                                reason="haproxy is not installed (apt-get install haproxy)")

CLIENT_ADDR = "127.0.0.3"
PROXY_ADDR = "127.0.0.2"


class Haproxy:
    """haproxy in the foreground on a free port in front of hato_port."""

    def __init__(self, tmp_path, hato_port, server_opts, bind_opts="", backend_opts=""):
        self.port = free_port()
        cfg = tmp_path / f"haproxy-{self.port}.cfg"
        cfg.write_text(f"""global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend mqtt
    bind 127.0.0.1:{self.port} {bind_opts}
    default_backend hato
backend hato
{backend_opts}
    server h1 127.0.0.1:{hato_port} source {PROXY_ADDR} {server_opts}
""")
        self.proc = subprocess.Popen([HAPROXY, "-f", str(cfg), "-db"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        # haproxy says nothing when it is ready: its port accepting is the sign.
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise AssertionError("haproxy exited: " + self.proc.stdout.read().decode())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("haproxy did not listen within 10 s")
                time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc.stdout.close()


@pytest.fixture
def haproxy(tmp_path):
    started = []

    def start(hato_port, server_opts, bind_opts="", backend_opts=""):
        h = Haproxy(tmp_path, hato_port, server_opts, bind_opts, backend_opts)
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()


class ClientFrom(RawClient):
    """A raw MQTT client whose socket is bound to CLIENT_ADDR."""

    def __init__(self, port, version=4, timeout=5.0, context=None):
        self.version, self.timeout = version, timeout
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                       source_address=(CLIENT_ADDR, 0))
        self.local = raw.getsockname()
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
        self.buf = bytearray()

    def _fill(self, deadline):
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            self.buf += self.sock.recv(self.sock.pending())
            return
        super()._fill(deadline)


def proxied_listener(broker_factory, version, extra=""):
    port = free_port()
    b = broker_factory(f"listener {port} 127.0.0.1\nenable_proxy_protocol {version}\n{extra}",
                       listener=False, anonymous=False)
    b.port = port
    return b


@pytest.mark.parametrize("version,opt", [(1, "send-proxy"), (2, "send-proxy-v2")])
def test_proxy_header_gives_the_client_address(broker_factory, haproxy, version, opt):
    """PROXY-2.1 / PROXY-2.2: the address haproxy sends is the one hato logs and uses."""
    b = proxied_listener(broker_factory, version, "allow_anonymous true\n")
    h = haproxy(b.port, opt)
    c = ClientFrom(h.port)
    c.send(connect("behind-proxy"))
    assert c.expect(mqttraw.CONNACK).reason == 0
    line = b.wait_log(r"is client 127\.0\.0\.3:\d+ \(address from the PROXY header\)")
    assert f"is client 127.0.0.3:{c.local[1]} " in line
    assert line.split(": ", 1)[1].startswith("Connection from 127.0.0.2:"), line  # haproxy
    b.wait_log(rf"New client connected from 127\.0\.0\.3:{c.local[1]} as behind-proxy")
    c.send(subscribe(1, [("p/#", 0)]))
    c.expect(mqttraw.SUBACK)
    c.send(publish("p/1", b"through haproxy"))
    assert c.expect(mqttraw.PUBLISH).payload == b"through haproxy"
    c.close()
    b.wait_log(rf"Client behind-proxy \[127\.0\.0\.3:{c.local[1]}\]")


def test_listener_requiring_proxy_refuses_a_direct_connection(broker_factory, haproxy):
    """A listener with enable_proxy_protocol closes a connection without a header, and
    only that one."""
    b = proxied_listener(broker_factory, 2, "allow_anonymous true\n")
    h = haproxy(b.port, "send-proxy-v2")
    good = ClientFrom(h.port)
    good.send(connect("good"))
    assert good.expect(mqttraw.CONNACK).reason == 0
    direct = RawClient(b.port)
    direct.send(connect("direct"))
    direct.expect_closed()
    b.wait_log(r"Connection from 127\.0\.0\.1:\d+ closed: PROXY header: no PROXY protocol header")
    good.send(mqttraw.pingreq())
    assert good.expect(mqttraw.PINGRESP)
    good.close()


@pytest.mark.parametrize("header,why", [
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "version 1, but the listener takes 2"),
    (b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + bytes(12), "version 2, but the listener takes 1"),
])
def test_header_of_the_other_version_is_refused(broker_factory, header, why):
    """A listener takes only the version it is configured for."""
    takes = 2 if header.startswith(b"PROXY") else 1
    b = proxied_listener(broker_factory, takes, "allow_anonymous true\n")
    c = RawClient(b.port)
    c.send(header + connect("x"))
    c.expect_closed()
    b.wait_log(why)


V1_JUNK = [
    (b"PROXY TCP4 999.1.1.1 1.1.1.1 1 2\r\n", "bad IPv4 address"),
    (b"PROXY TCP4 1.1.1.1\r\n", "expected PROXY TCPn SRC DST SPORT DPORT"),
    (b"PROXY TCP4 1.1.1.1 2.2.2.2 1 2\n", "LF without CR"),
    (b"PROXY TCP4 1.1.1.1 2.2.2.2 01 2\r\n", "without leading zeros"),
    (b"PROXY " + b"x" * 200, "the protocol must be TCP4, TCP6 or UNKNOWN"),
    (b"PROXY UNKNOWN " + b"x" * 200, "no CRLF within 107 bytes"),
]


def test_junk_header_closes_only_that_connection(broker_factory, haproxy):
    """PROXY-2.1: "any sequence which does not exactly match the protocol must be discarded
    and cause the receiver to abort the connection", each logged with its reason; the
    client behind haproxy is unaffected."""
    b = proxied_listener(broker_factory, 1, "allow_anonymous true\n")
    h = haproxy(b.port, "send-proxy")
    keep = ClientFrom(h.port)
    keep.send(connect("keeper"))
    keep.expect(mqttraw.CONNACK)
    for junk, why in V1_JUNK:
        c = RawClient(b.port)
        port = c.sock.getsockname()[1]
        c.send(junk)
        c.expect_closed()
        b.wait_log(rf"Connection from 127\.0\.0\.1:{port} closed: PROXY header: v1 header.*"
                   + re.escape(why))
    keep.send(mqttraw.pingreq())
    assert keep.expect(mqttraw.PINGRESP)
    keep.close()


def haproxy_tls_files(pki, tmp_path):
    pem = tmp_path / "haproxy-server.pem"
    pem.write_bytes(open(pki["server.crt"], "rb").read() + open(pki["server.key"], "rb").read())
    return f"ssl crt {pem} ca-file {pki['ca.crt']} verify required"


def client_tls(pki):
    ctx = ssl.create_default_context(cafile=pki["ca.crt"])
    ctx.load_cert_chain(pki["client.crt"], pki["client.key"])
    ctx.check_hostname = False
    return ctx


# haproxy's full set of v2 TLVs (2.6 names): the SSL TLV with cipher and
# certificate algorithms, SNI as PP2_TYPE_AUTHORITY, a unique id, and the
# CRC32C over all of it, which hato checks.
ALL_TLVS = "proxy-v2-options ssl,cert-cn,ssl-cipher,cert-sig,cert-key,authority,unique-id,crc32c"


@pytest.mark.parametrize("opts", ["send-proxy-v2-ssl-cn", "send-proxy-v2 " + ALL_TLVS],
                         ids=["ssl-cn", "all-tlvs-crc32c"])
def test_ssl_cn_from_haproxy_is_the_user_name(broker_factory, haproxy, pki, tmp_path, opts):
    """PROXY-2.2.6: haproxy terminates TLS, verifies the client certificate and passes its CN
    (PP2_SUBTYPE_SSL_CN); with use_identity_as_username it is the user name, which the
    ACL's %u pattern sees, next to %c (the client id)."""
    acl = tmp_path / "acl"
    acl.write_text("pattern readwrite users/%u/#\npattern read ids/%c/#\n")
    b = proxied_listener(broker_factory, 2,
                         f"proxy_protocol_v2_require_tls true\nuse_identity_as_username true\n"
                         f"acl_file {acl}\n")
    h = haproxy(b.port, opts, haproxy_tls_files(pki, tmp_path),
                backend_opts="    unique-id-format %{+X}o%ci:%cp")
    c = ClientFrom(h.port, context=client_tls(pki))
    c.send(connect("cert-client"))
    assert c.expect(mqttraw.CONNACK).reason == 0
    b.wait_log(r"Connection from 127\.0\.0\.2:\d+ is client 127\.0\.0\.3:\d+")
    b.wait_log(r"New client connected from 127\.0\.0\.3:\d+ as cert-client .*u'client1'")
    c.send(subscribe(1, [("users/client1/#", 0), ("users/other/#", 0), ("ids/cert-client/#", 0),
                         ("ids/other/#", 0)]))
    codes = c.expect(mqttraw.SUBACK).codes
    assert codes == [0, 0x80, 0, 0x80], codes  # %u is the CN, %c the client id
    c.send(publish("users/client1/t", b"mine"))
    assert c.expect(mqttraw.PUBLISH).payload == b"mine"
    c.close()


def test_require_tls_refuses_a_plain_client(broker_factory, haproxy, tmp_path):
    """proxy_protocol_v2_require_tls: a v2 header without the SSL flag is refused."""
    b = proxied_listener(broker_factory, 2, "proxy_protocol_v2_require_tls true\n"
                                            "allow_anonymous true\n")
    h = haproxy(b.port, "send-proxy-v2")
    c = ClientFrom(h.port)
    c.send(connect("plain"))
    c.expect_closed()
    b.wait_log(r"the client did not use TLS \(proxy_protocol_v2_require_tls\)")


def test_identity_listener_without_a_certificate_is_refused(broker_factory, haproxy, pki,
                                                            tmp_path):
    """use_identity_as_username behind a proxy: no verified CN, no login."""
    b = proxied_listener(broker_factory, 2, "use_identity_as_username true\n")
    h = haproxy(b.port, "send-proxy-v2")
    c = ClientFrom(h.port)
    c.send(connect("nocert"))
    assert c.expect(mqttraw.CONNACK).reason == 0x04
    b.wait_log(r"refused: no TLS identity for the user name")
    c.close()


def test_login_slowdown_counts_the_proxied_address(broker_factory, haproxy, tmp_path):
    """auth_fail_delay keys on the address from the PROXY header: failures from the client
    behind haproxy slow that client down, not every client of the proxy."""
    from authutil import mosquitto_passwd
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    b = proxied_listener(broker_factory, 2, f"password_file {pw}\nauth_fail_delay 100\n"
                                            "auth_fail_delay_max 400\n")
    h = haproxy(b.port, "send-proxy-v2")
    for expected in (100, 200):
        c = ClientFrom(h.port)
        c.send(connect("guess", username="alice", password=b"wrong"))
        assert c.expect(mqttraw.CONNACK).reason == 0x05
        b.wait_log(rf"Client guess \[127\.0\.0\.3:\d+\] refused: .*answered after {expected} ms")
        c.close()


def test_acl_client_id_pattern_behind_v1(broker_factory, haproxy, tmp_path):
    """PROXY-2.1 with an ACL: %c is the client id and %u the CONNECT user name, whatever the
    address the header gave."""
    from authutil import mosquitto_passwd
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "dave", "pw")
    acl = tmp_path / "acl"
    acl.write_text("pattern readwrite clients/%c/#\npattern read users/%u/#\n")
    b = proxied_listener(broker_factory, 1, f"password_file {pw}\nacl_file {acl}\n")
    h = haproxy(b.port, "send-proxy")
    c = ClientFrom(h.port)
    c.send(connect("dev7", username="dave", password=b"pw"))
    assert c.expect(mqttraw.CONNACK).reason == 0
    b.wait_log(r"New client connected from 127\.0\.0\.3:\d+ as dev7 .*u'dave'")
    c.send(subscribe(1, [("clients/dev7/#", 0), ("clients/dev8/#", 0), ("users/dave/#", 0),
                         ("users/erin/#", 0)]))
    assert c.expect(mqttraw.SUBACK).codes == [0, 0x80, 0, 0x80]
    c.close()


# MQTT 3.1.1 CONNECT (client id "hc", clean session) and its CONNACK, for
# haproxy's tcp-check.
HC_CONNECT = "100e00044d5154540402003c00026863"
HC_CONNACK = "20020000"


@pytest.mark.parametrize("version,opt", [(1, "send-proxy"), (2, "send-proxy-v2")])
def test_health_check_through_the_header(broker_factory, haproxy, version, opt):
    """PROXY-2.2 LOCAL: haproxy's health checks start with a LOCAL header (v2), or a TCP4 line
    with the check's own addresses (v1); hato accepts them with the socket's address and
    answers the check's CONNECT."""
    b = proxied_listener(broker_factory, version, "allow_anonymous true\n")
    haproxy(b.port, f"{opt} check inter 200ms",
            backend_opts=f"    option tcp-check\n"
                         f"    tcp-check send-binary {HC_CONNECT}\n"
                         f"    tcp-check expect binary {HC_CONNACK}")
    line = b.wait_log(r"New client connected from 127\.0\.0\.2:\d+ as hc ")
    port = re.search(r"from 127\.0\.0\.2:(\d+)", line).group(1)
    if version == 2:
        # LOCAL: no client address replaced the socket's.
        assert not re.search(rf"Connection from 127\.0\.0\.2:{port} is client", b.log)
    assert "PROXY header:" not in b.log


def v2_header(body, crc=True):
    """A v2 PROXY TCP4 header for 192.0.2.9:4242 -> 192.0.2.1:1883 with body TLVs after the
    addresses, and a CRC32C TLV (correct) at the end when crc."""
    def crc32c(data):
        c = 0xFFFFFFFF
        for byte in data:
            c ^= byte
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        return c ^ 0xFFFFFFFF
    assert crc32c(b"123456789") == 0xE3069283
    addrs = bytes([192, 0, 2, 9, 192, 0, 2, 1]) + struct.pack(">HH", 4242, 1883)
    block = addrs + body + (b"\x03\x00\x04" + bytes(4) if crc else b"")
    hdr = bytearray(b"\r\n\r\n\x00\r\nQUIT\n\x21\x11" + struct.pack(">H", len(block)) + block)
    if crc:
        hdr[-4:] = struct.pack(">I", crc32c(bytes(hdr)))
    return bytes(hdr)


def test_crc32c_mismatch_refused(broker_factory):
    """PROXY-2.2.3: a header whose CRC32C TLV does not match is invalid; the same header with
    the right checksum is accepted, and gives its source address."""
    b = proxied_listener(broker_factory, 2, "allow_anonymous true\n")
    good = v2_header(b"\x04\x00\x02ok")
    c = RawClient(b.port)
    c.send(good + connect("crc-ok"))
    assert c.expect(mqttraw.CONNACK).reason == 0
    b.wait_log(r"New client connected from 192\.0\.2\.9:4242 as crc-ok")
    bad = bytearray(good)
    bad[-8] ^= 0x01  # the NOOP TLV's last byte, just before the CRC32C TLV
    d = RawClient(b.port)
    d.send(bytes(bad) + connect("crc-bad"))
    d.expect_closed()
    b.wait_log(r"closed: PROXY header: v2 header: CRC32C mismatch")
    c.send(mqttraw.pingreq())
    assert c.expect(mqttraw.PINGRESP)
    c.close()


def test_incomplete_header_times_out(broker_factory, haproxy):
    """A header that never completes holds nothing for long: closed after connect_timeout
    ("PROXY header not received in time"), the client behind haproxy unaffected."""
    b = proxied_listener(broker_factory, 2, "allow_anonymous true\nconnect_timeout 1\n")
    h = haproxy(b.port, "send-proxy-v2")
    keep = ClientFrom(h.port)
    keep.send(connect("keeper"))
    assert keep.expect(mqttraw.CONNACK).reason == 0
    slow = RawClient(b.port)
    slow.send(v2_header(b"", crc=False)[:20])
    slow.expect_closed(timeout=10)
    b.wait_log(r"PROXY header not received in time")
    keep.send(mqttraw.pingreq())
    assert keep.expect(mqttraw.PINGRESP)
    keep.close()


def test_require_tls_refuses_health_checks(broker_factory, haproxy):
    """proxy_protocol_v2_require_tls: a LOCAL header says nothing about TLS, so haproxy's health
    checks are refused like plain clients (docs/websockets.md says so)."""
    b = proxied_listener(broker_factory, 2, "proxy_protocol_v2_require_tls true\n"
                                            "allow_anonymous true\n")
    haproxy(b.port, "send-proxy-v2-ssl-cn check inter 200ms",
            backend_opts=f"    option tcp-check\n"
                         f"    tcp-check send-binary {HC_CONNECT}\n"
                         f"    tcp-check expect binary {HC_CONNACK}")
    b.wait_log(r"Connection from 127\.0\.0\.2:\d+ closed: PROXY header: the client did not use TLS")
    assert "as hc " not in b.log
