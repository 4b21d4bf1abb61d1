"""TLS listeners: certificates made with the operations guide's openssl commands (tests/tlspki.py),
clients from Python's ssl, paho-mqtt and mosquitto_pub/mosquitto_sub.

Every test here reads hato's log or uses hato-only behaviour, so the module is hato_only.
"""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest

from conftest import HATO_BIN, free_port
from mqttraw import CONNACK, PUBLISH, connect, publish, recv_publish, subscribe_ok
from tlspki import PSK_IDENTITY, PSK_KEY, TLSClient, pki  # noqa: F401 (pki is a fixture)

pytestmark = pytest.mark.hato_only("TLS log lines and set-up are hato's")

WAIT = 10


def server_conf(pki, extra="", cert="server"):
    return (f"cafile {pki['ca.crt']}\ncertfile {pki[cert + '.crt']}\n"
            f"keyfile {pki[cert + '.key']}\n{extra}")


def client_ctx(pki, ca="ca.crt", cert=None, **kw):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki[ca])
    if cert:
        ctx.load_cert_chain(pki[cert + ".crt"], pki[cert + ".key"])
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def tls_connected(port, ctx, client_id="", version=4, **kw):
    c = TLSClient(port, ctx, version=version)
    c.send(connect(client_id, version=version, **kw))
    ack = c.expect(CONNACK)
    assert ack.reason == 0, ack
    return c


def refused(port, ctx, client_id="x"):
    """The TLS connection does not reach CONNACK: the handshake or the first read fails."""
    try:
        c = TLSClient(port, ctx)
    except (ssl.SSLError, ConnectionError, OSError):
        return True
    try:
        c.send(connect(client_id))
        c.expect(CONNACK)
    except (ssl.SSLError, ConnectionError, OSError, TimeoutError):
        return True
    finally:
        c.close()
    return False


def der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class Paho:
    """paho-mqtt over TLS with its own network thread; waits are bounded events."""

    def __init__(self, port, ctx, client_id, protocol=mqtt.MQTTv311):
        self.got = []
        self.cond = threading.Condition()
        self.connected = threading.Event()
        self.c = mqtt.Client(client_id=client_id, protocol=protocol)
        self.c.tls_set_context(ctx)
        self.c.on_connect = lambda *a: self.connected.set()
        self.c.on_message = self._msg
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        assert self.connected.wait(WAIT), "paho did not connect over TLS"

    def _msg(self, c, userdata, m):
        with self.cond:
            self.got.append(m)
            self.cond.notify_all()

    def subscribe(self, topic, qos=1):
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(topic, qos)
        assert done.wait(WAIT)

    def get(self, n=1):
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got) >= n, WAIT), self.got
            return self.got[:n]

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()


def run(*cmd, timeout=WAIT, **kw):
    return subprocess.run(list(cmd), stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, **kw)


# --- a TLS listener with the server certificate ------------------------------------------------

@pytest.mark.parametrize("proto", [mqtt.MQTTv311, mqtt.MQTTv5], ids=["v311", "v5"])
def test_paho_over_tls(broker_factory, pki, proto):
    """paho with Python's ssl (hostname and CA checked) publishes and receives over TLS."""
    b = broker_factory(server_conf(pki))
    sub = Paho(b.port, client_ctx(pki), "tls-sub", proto)
    pub = Paho(b.port, client_ctx(pki), "tls-pub", proto)
    try:
        sub.subscribe("tls/t", 1)
        for q in (0, 1, 2):
            pub.c.publish("tls/t", f"m{q}".encode(), qos=q)
        got = sub.get(3)
        assert sorted(m.payload for m in got) == [b"m0", b"m1", b"m2"]
    finally:
        sub.stop()
        pub.stop()
    b.wait_log(r"New client connected from 127\.0\.0\.1:\d+ as tls-sub")


def test_mosquitto_clients_tls12(broker_factory, pki, tmp_path):
    """The guide's client commands: mosquitto_pub/mosquitto_sub --cafile ca.crt --tls-version
    tlsv1.2 -p PORT, against `tls_version tlsv1.2`."""
    b = broker_factory(server_conf(pki, "tls_version tlsv1.2\n"))
    common = ["--cafile", pki["ca.crt"], "--tls-version", "tlsv1.2", "-h", "127.0.0.1",
              "-p", str(b.port)]
    r = run("mosquitto_pub", *common, "-t", "guide/t", "-m", "hello over tls", "-r", "-q", "1")
    assert r.returncode == 0, r
    r = run("mosquitto_sub", *common, "-t", "guide/t", "-C", "1", "-W", "10")
    assert r.returncode == 0, r
    assert r.stdout == b"hello over tls\n"
    b.wait_log(r"New client connected from 127\.0\.0\.1:\d+")


def test_live_delivery_mosquitto_sub(broker_factory, pki):
    """A message published over TLS reaches a TLS subscriber that is already connected."""
    b = broker_factory(server_conf(pki))
    sub = subprocess.Popen(["mosquitto_sub", "--cafile", pki["ca.crt"], "-h", "127.0.0.1",
                            "-p", str(b.port), "-t", "live/#", "-C", "1", "-W", "10",
                            "-i", "live-sub", "-q", "1"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        b.wait_log(r"as live-sub")
        with tls_connected(b.port, client_ctx(pki), "live-pub") as c:
            # The subscription is in once SUBACK went out; a retained-free publish after
            # a second client's round trip through the same broker is ordered after it.
            probe = tls_connected(b.port, client_ctx(pki), "probe")
            subscribe_ok(probe, 1, [("live/#", 1)])
            c.send(publish("live/x", b"payload", qos=0))
            assert recv_publish(probe).payload == b"payload"
            probe.close()
        out, _ = sub.communicate(timeout=WAIT)
        assert out == b"payload\n"
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()


def test_plain_and_tls_listeners_side_by_side(broker_factory, pki):
    """A plain listener and a TLS listener in one broker share the topic space."""
    plain = free_port()
    b = broker_factory(server_conf(pki) + f"listener {plain} 127.0.0.1\n")
    from mqttraw import connected_client
    p = connected_client(plain, "plain")
    t = tls_connected(b.port, client_ctx(pki), "tls")
    try:
        subscribe_ok(p, 1, [("mix/#", 0)])
        subscribe_ok(t, 1, [("mix/#", 0)])
        t.send(publish("mix/from-tls", b"a"))
        p.send(publish("mix/from-plain", b"b"))
        for c in (p, t):
            got = {recv_publish(c).topic for _ in range(2)}
            assert got == {"mix/from-tls", "mix/from-plain"}, got
    finally:
        p.close()
        t.close()
    # A TLS client on the plain port and a plain client on the TLS port both fail cleanly.
    assert refused(plain, client_ctx(pki))
    with socket.create_connection(("127.0.0.1", b.port), timeout=WAIT) as s:
        s.sendall(connect("plain-on-tls"))
        s.settimeout(WAIT)
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        assert data[:1] != bytes([CONNACK << 4])


@pytest.mark.parametrize("size", [20 * 1024, 1536 * 1024 + 7], ids=["20KiB", "1.5MiB"])
def test_large_payloads_both_ways(broker_factory, pki, size):
    """Payloads larger than a TLS record (16 KiB) and than 1 MiB, client to broker and
    broker to client, arrive intact; two subscribers share the message."""
    b = broker_factory(server_conf(pki))
    payload = os.urandom(size)
    subs = [tls_connected(b.port, client_ctx(pki), f"big-sub{i}") for i in range(2)]
    pub = tls_connected(b.port, client_ctx(pki), "big-pub")
    try:
        for s in subs:
            subscribe_ok(s, 1, [("big/t", 1)])
        pub.send(publish("big/t", payload, qos=1, pid=7))
        from mqttraw import PUBACK
        pub.expect(PUBACK, timeout=WAIT)
        for s in subs:
            m = recv_publish(s, timeout=WAIT)
            assert m.payload == payload
    finally:
        for c in subs + [pub]:
            c.close()


def test_many_small_messages_in_one_burst(broker_factory, pki):
    """Many small messages queued in one turn are gathered into records and all arrive
    in order (QoS 0, then a QoS 1 marker)."""
    b = broker_factory(server_conf(pki) + "max_queued_messages 0\n")
    sub = tls_connected(b.port, client_ctx(pki), "burst-sub")
    pub = tls_connected(b.port, client_ctx(pki), "burst-pub")
    try:
        subscribe_ok(sub, 1, [("burst/t", 0)])
        n = 2000
        pub.send(b"".join(publish("burst/t", b"%06d" % i) for i in range(n)))
        got = [recv_publish(sub, timeout=WAIT).payload for _ in range(n)]
        assert got == [b"%06d" % i for i in range(n)]
    finally:
        sub.close()
        pub.close()


def test_mosquitto_pub_large_file(broker_factory, pki, tmp_path):
    """mosquitto_pub -f with a 2 MiB file over TLS, read back by mosquitto_sub (retained)."""
    b = broker_factory(server_conf(pki))
    data = os.urandom(2 * 1024 * 1024)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    common = ["--cafile", pki["ca.crt"], "-h", "127.0.0.1", "-p", str(b.port)]
    r = run("mosquitto_pub", *common, "-t", "file/t", "-f", str(src), "-r", "-q", "1")
    assert r.returncode == 0, r
    r = run("mosquitto_sub", *common, "-t", "file/t", "-C", "1", "-W", "10", "-N")
    assert r.returncode == 0, r
    assert r.stdout == data


# --- what is refused ----------------------------------------------------------------------------

def test_wrong_ca_rejected(broker_factory, pki):
    """A client that trusts another CA refuses the server; a client certificate from another
    CA is refused by the server (require_certificate), and the log says why and from where."""
    b = broker_factory(server_conf(pki, "require_certificate true\n"))
    assert refused(b.port, client_ctx(pki, ca="other-ca.crt", cert="client"))
    b.wait_log(r"TLS handshake failed with client 127\.0\.0\.1:\d+ on port \d+: .*unknown ca")
    mark = b.mark()
    assert refused(b.port, client_ctx(pki, cert="other-client"))
    b.wait_log(r"TLS handshake failed with client 127\.0\.0\.1:\d+ .*"
               r"(certificate verify failed|unable to get local issuer)", start=mark)


def test_expired_client_certificate_rejected(broker_factory, pki):
    """A client certificate whose validity ended (2020) is refused."""
    b = broker_factory(server_conf(pki, "require_certificate true\n"))
    assert refused(b.port, client_ctx(pki, cert="expired"))
    b.wait_log(r"TLS handshake failed with client 127\.0\.0\.1:\d+ .*certificate has expired")
    with tls_connected(b.port, client_ctx(pki, cert="client"), "ok"):
        pass


def test_require_certificate(broker_factory, pki):
    """require_certificate true: no client certificate, no connection; a good one connects."""
    b = broker_factory(server_conf(pki, "require_certificate true\n"))
    assert refused(b.port, client_ctx(pki))
    b.wait_log(r"TLS handshake failed with client 127\.0\.0\.1:\d+ .*"
               r"peer did not return a certificate")
    with tls_connected(b.port, client_ctx(pki, cert="client"), "with-cert"):
        pass


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls11_refused(broker_factory, pki):
    """TLS 1.1 (and older) is never negotiated, whatever tls_version says."""
    b = broker_factory(server_conf(pki))
    ctx = client_ctx(pki)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    assert refused(b.port, ctx)
    b.wait_log(r"TLS handshake failed with client 127\.0\.0\.1:\d+ .*unsupported protocol")


def test_tls_version_tlsv13_is_a_minimum(broker_factory, pki):
    """tls_version tlsv1.3 refuses a TLS 1.2 client and accepts TLS 1.3."""
    b = broker_factory(server_conf(pki, "tls_version tlsv1.3\n"))
    assert refused(b.port, client_ctx(pki, maximum_version=ssl.TLSVersion.TLSv1_2))
    c = tls_connected(b.port, client_ctx(pki), "v13")
    assert c.sock.version() == "TLSv1.3"
    c.close()


def start_fails(tmp_path, text):
    conf = tmp_path / "bad.conf"
    conf.write_text(f"listener {free_port()} 127.0.0.1\nallow_anonymous true\n" + text)
    r = run(HATO_BIN, "-c", str(conf))
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert r.returncode != 0, out
    return out


def test_missing_key_file_stops_startup(tmp_path, pki):
    """A missing keyfile stops start-up with the file:line of the listener, the path and why."""
    missing = str(tmp_path / "nope.key")
    out = start_fails(tmp_path, f"certfile {pki['server.crt']}\nkeyfile {missing}\n")
    assert "bad.conf:1:" in out and missing in out and "No such file" in out, out


def test_unreadable_or_wrong_files_stop_startup(tmp_path, pki):
    """A certificate that is not one, a key that does not match, a bad CA file."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    out = start_fails(tmp_path, f"certfile {junk}\nkeyfile {pki['server.key']}\n")
    assert str(junk) in out and "certfile" in out, out
    out = start_fails(tmp_path, f"certfile {pki['server.crt']}\nkeyfile {pki['server2.key']}\n")
    assert "does not match" in out and pki["server2.key"] in out, out
    out = start_fails(tmp_path, f"cafile {junk}\ncertfile {pki['server.crt']}\n"
                      f"keyfile {pki['server.key']}\n")
    assert "cafile" in out and str(junk) in out, out


def test_tls_config_refusals(tmp_path, pki):
    """tls_version tlsv1.1 is a config error with its line; require_certificate needs a CA;
    bad cipher lists and DH files stop start-up."""
    out = start_fails(tmp_path, server_conf(pki, "tls_version tlsv1.1\n"))
    assert "bad.conf:6:" in out and "tls_version" in out, out
    out = start_fails(tmp_path, f"certfile {pki['server.crt']}\nkeyfile {pki['server.key']}\n"
                      "require_certificate true\n")
    assert "require_certificate needs cafile or capath" in out, out
    out = start_fails(tmp_path, server_conf(pki, "ciphers NO-SUCH-CIPHER\n"))
    assert "ciphers 'NO-SUCH-CIPHER'" in out, out
    out = start_fails(tmp_path, server_conf(pki, f"dhparamfile {pki['ca.crt']}\n"))
    assert "dhparamfile" in out, out


def test_handshake_failure_logged_with_address(broker_factory, pki):
    """Plain MQTT sent to a TLS port: the failed handshake is logged with the peer address
    and OpenSSL's reason."""
    b = broker_factory(server_conf(pki))
    with socket.create_connection(("127.0.0.1", b.port), timeout=WAIT) as s:
        local = s.getsockname()[1]
        s.sendall(connect("not-tls"))
        b.wait_log(rf"TLS handshake failed with client 127\.0\.0\.1:{local} on port {b.port}: "
                   r"error:[0-9A-F]+:SSL routines:")


def test_handshake_timeout(broker_factory, pki):
    """A client that opens the TCP connection and never starts TLS is closed after
    connect_timeout."""
    b = broker_factory(server_conf(pki) + "connect_timeout 1\n")
    with socket.create_connection(("127.0.0.1", b.port), timeout=WAIT) as s:
        local = s.getsockname()[1]
        b.wait_log(rf"Connection from 127\.0\.0\.1:{local} closed: TLS handshake not finished",
                   timeout=WAIT)
        s.settimeout(WAIT)
        assert s.recv(10) == b""


# --- client certificates as user names --------------------------------------------------------

def test_use_identity_as_username(broker_factory, pki):
    """use_identity_as_username: the certificate's CN is the user name, and a CONNECT user
    name does not replace it. With allow_anonymous false the certificate is the credential."""
    b = broker_factory(server_conf(pki, "require_certificate true\nuse_identity_as_username true\n"),
                       anonymous=False)
    with tls_connected(b.port, client_ctx(pki, cert="client"), "cert-user"):
        b.wait_log(r"as cert-user \(.*u'client1'\)")
    with tls_connected(b.port, client_ctx(pki, cert="client"), "liar", username="admin",
                       password="x"):
        b.wait_log(r"as liar \(.*u'client1'\)")
    assert "u'admin'" not in b.log


def test_use_identity_without_certificate_refused(broker_factory, pki):
    """use_identity_as_username without require_certificate: a client without a certificate
    gets CONNACK 'bad user name or password' (MQTT 3.1.1: 4), not the CONNECT user name."""
    b = broker_factory(server_conf(pki, "use_identity_as_username true\n"))
    c = TLSClient(b.port, client_ctx(pki))
    c.send(connect("no-cert", username="admin", password="x"))
    ack = c.expect(CONNACK)
    assert ack.body[1] == 4, ack
    c.expect_closed()
    b.wait_log(r"Client no-cert \[127\.0\.0\.1:\d+\] refused: no TLS identity")
    with tls_connected(b.port, client_ctx(pki, cert="client"), "has-cert"):
        b.wait_log(r"as has-cert \(.*u'client1'\)")


def test_use_subject_as_username(broker_factory, pki):
    """use_subject_as_username: the user name is the subject in RFC 2253 form."""
    b = broker_factory(server_conf(pki, "require_certificate true\nuse_subject_as_username true\n"))
    with tls_connected(b.port, client_ctx(pki, cert="client"), "subj"):
        b.wait_log(r"as subj \(.*u'CN=client1'\)")


def test_crlfile_revokes(broker_factory, pki):
    """crlfile: a revoked client certificate is refused, the others are accepted."""
    b = broker_factory(server_conf(pki, f"require_certificate true\ncrlfile {pki['crl.pem']}\n"))
    assert refused(b.port, client_ctx(pki, cert="revoked"))
    b.wait_log(r"TLS handshake failed with client 127\.0\.0\.1:\d+ .*certificate revoked")
    with tls_connected(b.port, client_ctx(pki, cert="client"), "not-revoked"):
        pass


def test_dhparamfile_and_ciphers(broker_factory, pki):
    """dhparamfile gives DHE suites their group; `ciphers` limits TLS 1.2 suites and
    `ciphers_tls1.3` the TLS 1.3 ones."""
    b = broker_factory(server_conf(
        pki, f"dhparamfile {pki['dh.pem']}\nciphers DHE-RSA-AES128-GCM-SHA256\n"
        "ciphers_tls1.3 TLS_CHACHA20_POLY1305_SHA256\n"))
    ctx = client_ctx(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    c = tls_connected(b.port, ctx, "dhe")
    assert c.sock.cipher()[0] == "DHE-RSA-AES128-GCM-SHA256"
    c.close()
    c = tls_connected(b.port, client_ctx(pki), "tls13")
    assert c.sock.cipher()[0] == "TLS_CHACHA20_POLY1305_SHA256"
    c.close()
    ctx = client_ctx(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE-RSA-AES256-GCM-SHA384")
    assert refused(b.port, ctx)


# --- PSK -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("tls_version", ["tlsv1.2", "tlsv1.3"])
def test_psk_with_mosquitto_clients(broker_factory, pki, tls_version):
    """psk_hint + psk_file (identity:hexkey): mosquitto_pub/sub --psk connect; the identity is
    the user name with use_identity_as_username; a wrong key is refused."""
    b = broker_factory(f"psk_hint hato\npsk_file {pki['psk.txt']}\nuse_identity_as_username true\n")
    common = ["--psk", PSK_KEY, "--psk-identity", PSK_IDENTITY, "--tls-version", tls_version,
              "-h", "127.0.0.1", "-p", str(b.port)]
    r = run("mosquitto_pub", *common, "-t", "psk/t", "-m", "psk works", "-r", "-i", "psk-pub")
    assert r.returncode == 0, r
    b.wait_log(r"as psk-pub \(.*u'psk-client'\)")
    r = run("mosquitto_sub", *common, "-t", "psk/t", "-C", "1", "-W", "10")
    assert r.returncode == 0 and r.stdout == b"psk works\n", r
    bad = ["--psk", "00" * 16, "--psk-identity", PSK_IDENTITY, "--tls-version", tls_version,
           "-h", "127.0.0.1", "-p", str(b.port)]
    r = run("mosquitto_pub", *bad, "-t", "psk/t", "-m", "x")
    assert r.returncode != 0, r
    b.wait_log(r"TLS handshake failed with client 127\.0\.0\.1:\d+")


def test_psk_file_malformed_line_stops_startup(tmp_path):
    """A malformed psk_file line is never an identity: start-up stops with its line."""
    pf = tmp_path / "psk.txt"
    pf.write_text("good:00ff\n\nbad-line-without-key\n")
    out = start_fails(tmp_path, f"psk_hint h\npsk_file {pf}\n")
    assert f"{pf}:3:" in out, out


# --- reload on SIGHUP ---------------------------------------------------------------------------

def test_sighup_reloads_certificate_without_dropping(broker_factory, pki, tmp_path):
    """Certificate rotation: after the files change and SIGHUP, new connections get the new
    certificate, and a connection opened before keeps working."""
    live = tmp_path / "live"
    live.mkdir()
    for n in ("server.crt", "server.key"):
        shutil.copy(pki[n], live / n)
    conf = (f"cafile {pki['ca.crt']}\ncertfile {live / 'server.crt'}\n"
            f"keyfile {live / 'server.key'}\n")
    b = broker_factory(conf)
    old = tls_connected(b.port, client_ctx(pki), "old")
    assert old.sock.getpeercert(binary_form=True) == der(pki["server.crt"])
    subscribe_ok(old, 1, [("rot/#", 0)])
    # Rotate: write the new files (each replaced whole), then HUP.
    for n in ("crt", "key"):
        shutil.copy(pki[f"server2.{n}"], live / f"tmp.{n}")
        os.replace(live / f"tmp.{n}", live / f"server.{n}")
    mark = b.mark()
    b.signal(signal.SIGHUP)
    b.wait_log(r"TLS certificates reloaded for 1 listener\.", start=mark)
    new = tls_connected(b.port, client_ctx(pki), "new")
    assert new.sock.getpeercert(binary_form=True) == der(pki["server2.crt"])
    new.send(publish("rot/x", b"after reload"))
    assert recv_publish(old).payload == b"after reload"
    old.close()
    new.close()


def test_sighup_with_bad_files_keeps_old_certificate(broker_factory, pki, tmp_path):
    """A reload that fails (key no longer matches) is logged and the old context stays."""
    live = tmp_path / "live"
    live.mkdir()
    for n in ("server.crt", "server.key"):
        shutil.copy(pki[n], live / n)
    b = broker_factory(f"cafile {pki['ca.crt']}\ncertfile {live / 'server.crt'}\n"
                       f"keyfile {live / 'server.key'}\n")
    shutil.copy(pki["server2.key"], live / "server.key")
    mark = b.mark()
    b.signal(signal.SIGHUP)
    b.wait_log(r"TLS reload: .*does not match.*keeps its current certificates", start=mark)
    c = tls_connected(b.port, client_ctx(pki), "still")
    assert c.sock.getpeercert(binary_form=True) == der(pki["server.crt"])
    c.close()


def test_psk_file_reloaded_on_sighup(broker_factory, pki, tmp_path):
    """SIGHUP re-reads psk_file: a key removed from it no longer connects, a new one does."""
    pf = tmp_path / "psk.txt"
    pf.write_text(f"{PSK_IDENTITY}:{PSK_KEY}\n")
    b = broker_factory(f"psk_hint hato\npsk_file {pf}\n")

    def pub(identity, key):
        return run("mosquitto_pub", "--psk", key, "--psk-identity", identity, "-h", "127.0.0.1",
                   "-p", str(b.port), "-t", "psk/r", "-m", "x").returncode

    assert pub(PSK_IDENTITY, PSK_KEY) == 0
    pf.write_text("rotated:" + "ab" * 16 + "\n")
    mark = b.mark()
    b.signal(signal.SIGHUP)
    b.wait_log(r"TLS certificates reloaded for 1 listener\.", start=mark)
    assert pub(PSK_IDENTITY, PSK_KEY) != 0
    assert pub("rotated", "ab" * 16) == 0


def test_disable_client_cert_date_checks(broker_factory, pki):
    """disable_client_cert_date_checks (Mosquitto 2.1) accepts an expired client certificate
    that still chains to the CA."""
    b = broker_factory(server_conf(pki, "require_certificate true\n"
                                        "disable_client_cert_date_checks true\n"))
    with tls_connected(b.port, client_ctx(pki, cert="expired"), "old-cert"):
        pass


def test_bytes_after_connect_follow_the_connection(broker_factory, pki):
    """CONNECT, SUBSCRIBE and PUBLISH sent back to back (separate TLS records, read ahead
    together): when CONNECT hands the connection to the worker that owns the client id,
    the records still inside OpenSSL are read there."""
    b = broker_factory(server_conf(pki) + "threads 4\n")
    from mqttraw import SUBACK, subscribe
    for i in range(12):
        c = TLSClient(b.port, client_ctx(pki))
        try:
            cid = f"burst-{i}"
            c.send(connect(cid))
            c.send(subscribe(1, [(f"own/{cid}", 0)]))
            c.send(publish(f"own/{cid}", b"echo"))
            assert c.expect(CONNACK).reason == 0
            c.expect(SUBACK)
            assert recv_publish(c).payload == b"echo"
        finally:
            c.close()


def test_stalled_tls_reader_catches_up(broker_factory, pki):
    """A TLS subscriber that stops reading while 16 MiB are published (the broker's writes
    block), then reads again, receives every message in order."""
    b = broker_factory(server_conf(pki) + "max_queued_messages 0\nmax_inflight_messages 0\n")
    sub = tls_connected(b.port, client_ctx(pki), "stall-sub")
    pub = tls_connected(b.port, client_ctx(pki), "stall-pub")
    try:
        subscribe_ok(sub, 1, [("stall/t", 1)])
        n, size = 1024, 16 * 1024
        from mqttraw import PUBACK
        for i in range(n):
            pub.send(publish("stall/t", bytes([i % 256]) * size, qos=1, pid=i + 1))
        for i in range(n):
            pub.expect(PUBACK, timeout=WAIT)
        for i in range(n):
            m = recv_publish(sub, timeout=WAIT)
            assert m.payload == bytes([i % 256]) * size, i
    finally:
        sub.close()
        pub.close()


def test_test_config_checks_tls_files(tmp_path, pki):
    """--test-config loads the certificates too: a key that does not match is reported."""
    conf = tmp_path / "t.conf"
    conf.write_text(f"listener {free_port()} 127.0.0.1\n" + server_conf(pki))
    r = run(HATO_BIN, "--test-config", "-c", str(conf))
    assert r.returncode == 0, r
    conf.write_text(f"listener {free_port()} 127.0.0.1\n"
                    f"certfile {pki['server.crt']}\nkeyfile {pki['client.key']}\n")
    r = run(HATO_BIN, "--test-config", "-c", str(conf))
    assert r.returncode != 0 and b"does not match" in r.stderr + r.stdout, r


def test_capath_directory(broker_factory, pki, tmp_path):
    """capath: a directory of CA certificates under their hash names (`openssl rehash`)
    verifies client certificates like cafile does."""
    d = tmp_path / "cas"
    d.mkdir()
    shutil.copy(pki["ca.crt"], d / "ca.pem")
    r = run("openssl", "rehash", str(d))
    assert r.returncode == 0, r
    b = broker_factory(f"capath {d}\ncertfile {pki['server.crt']}\nkeyfile {pki['server.key']}\n"
                       "require_certificate true\nuse_identity_as_username true\n")
    with tls_connected(b.port, client_ctx(pki, cert="client"), "via-capath"):
        b.wait_log(r"as via-capath \(.*u'client1'\)")
    assert refused(b.port, client_ctx(pki, cert="other-client"))


def test_sighup_crl_drops_revoked_connected_client(broker_factory, pki, tmp_path):
    """Reload takes access away from connected clients too: after a new CRL revokes a
    certificate and SIGHUP, its connection is closed (MQTT 5: DISCONNECT 0x87 not authorized),
    its will is not published, and other certificate clients stay connected."""
    live = tmp_path / "live"
    live.mkdir()
    shutil.copy(pki["crl-empty.pem"], live / "crl.pem")
    b = broker_factory(server_conf(pki, f"require_certificate true\ncrlfile {live / 'crl.pem'}\n"))
    from mqttraw import DISCONNECT
    watcher = tls_connected(b.port, client_ctx(pki, cert="client"), "watcher")
    subscribe_ok(watcher, 1, [("will/#", 0), ("still/#", 0)])
    rev = tls_connected(b.port, client_ctx(pki, cert="revoked"), "rev", version=5,
                        will={"topic": "will/rev", "payload": b"gone"})
    shutil.copy(pki["crl.pem"], live / "crl.tmp")
    os.replace(live / "crl.tmp", live / "crl.pem")
    mark = b.mark()
    b.signal(signal.SIGHUP)
    b.wait_log(r"Client rev \[127\.0\.0\.1:\d+\](?: \(user '[^']*'\))? disconnected: client certificate no longer "
               r"accepted: certificate revoked", start=mark)
    got = rev.expect_closed()
    assert [p.type for p in got] == [DISCONNECT] and got[0].body[:1] == b"\x87", got
    watcher.send(publish("still/x", b"here"))
    assert recv_publish(watcher).topic == "still/x"   # no will before it
    watcher.close()
    assert refused(b.port, client_ctx(pki, cert="revoked"))


def test_sighup_psk_drops_removed_identity(broker_factory, pki, tmp_path):
    """A PSK identity removed from psk_file loses its open connection on SIGHUP."""
    pf = tmp_path / "psk.txt"
    pf.write_text(f"{PSK_IDENTITY}:{PSK_KEY}\nother:{'cd' * 16}\n")
    b = broker_factory(f"psk_hint hato\npsk_file {pf}\n")
    sub = subprocess.Popen(["mosquitto_sub", "--psk", PSK_KEY, "--psk-identity", PSK_IDENTITY,
                            "-h", "127.0.0.1", "-p", str(b.port), "-t", "x", "-i", "psk-sub",
                            "-W", "20"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        b.wait_log(r"as psk-sub")
        pf.write_text(f"other:{'cd' * 16}\n")
        mark = b.mark()
        b.signal(signal.SIGHUP)
        b.wait_log(r"Client psk-sub \[127\.0\.0\.1:\d+\](?: \(user '[^']*'\))? disconnected: PSK identity no longer "
                   r"in psk_file", start=mark)
    finally:
        sub.kill()
        sub.wait()
