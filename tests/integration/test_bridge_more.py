"""Bridges (issue 16): the directives no other test_bridge*.py covers.

bridge_alpn, bridge_capath, bridge_tls_use_os_certs, bridge_bind_address,
the default local_clientid, local_username with an ACL both ways,
local_cleansession (independent of cleansession), restart_timeout (constant
and BASE CAP), and WebSocket addresses (`ws://`, `wss://`, ours).

Already covered elsewhere, so not here: remote_username/remote_password
(test_bridge.py), keepalive_interval and bridge_max_packet_size
(test_bridge_options.py, test_bridge_core.py), local_clientid given
(test_bridge_core.py).

Most tests run with mosquitto 2.0.11 and with hato as the bridging broker
(`bridging`, see bridgekit); a known 2.0.11 difference is marked with
mosquitto_differs. Remotes are mosquitto, hato, or `openssl s_server`
where the TLS handshake itself is what is looked at.
"""

import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

from bridgekit import (Client, StdinProcess, await_flow, bridge_block, bridging,  # noqa: F401
                       count_lines, mosquitto_differs, nodes, sentinel_wait, up_in, up_out)
from conftest import free_port
from tlspki import pki  # noqa: F401 (a fixture)

pytestmark = pytest.mark.hato_only("starts mosquitto and hato itself, both as bridges")


def tls_listener(pki, port, extra=""):
    """A TLS listener with the test CA's server certificate (127.0.0.1 in its
    names), no client certificate asked for."""
    return (f"listener {port} 127.0.0.1\ncafile {pki['ca.crt']}\n"
            f"certfile {pki['server.crt']}\nkeyfile {pki['server.key']}\n{extra}")


def tls_remote(nodes, pki, kind="mosquitto", extra=""):
    """A broker with a plain listener (for the test's clients) and a TLS one
    (for the bridge)."""
    tls_port = free_port()
    remote = nodes.start(kind, tls_listener(pki, tls_port, extra), name="remote")
    remote.tls_port = tls_port
    return remote


def tls_bridge(remote, extra, topics=("t/# out 1",)):
    return bridge_block(remote, topics=list(topics), address=f"127.0.0.1:{remote.tls_port}",
                        extra=extra)


def s_server(pki, port, *args):
    """`openssl s_server` on 127.0.0.1:port with the test server certificate;
    it prints what the handshake carried and the bytes it receives."""
    p = StdinProcess(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert",
                      pki["server.crt"], "-key", pki["server.key"], *args])
    p.wait_log(r"^ACCEPT", timeout=20)
    return p


# ---------------------------------------------------------------------------
# bridge_alpn


def test_bridge_alpn_offered_in_handshake(nodes, bridging, pki):
    """bridge_alpn: the protocol name goes out in the ClientHello's ALPN
    extension (what AWS IoT Core on port 443 chooses by): `openssl s_server`
    prints what the client advertised and that it selected it; the handshake
    then completes (it prints the cipher)."""
    port = free_port()
    server = s_server(pki, port, "-alpn", "x-amzn-mqtt-ca")
    try:
        nodes.start(bridging, bridge_block(_Addr(port), topics=["t/# out 1"], clientid="alpn-bridge",
                                           extra=f"bridge_cafile {pki['ca.crt']}\n"
                                                 "bridge_alpn x-amzn-mqtt-ca\n"),
                    name="local")
        server.wait_log(r"ALPN protocols advertised by the client: x-amzn-mqtt-ca$", timeout=20)
        server.wait_log(r"^ALPN protocols selected: x-amzn-mqtt-ca$", timeout=20)
        server.wait_log(r"^CIPHER is ", timeout=20)
    finally:
        server.kill()


def test_bridge_alpn_refused_by_server_is_logged(nodes, bridging, pki):
    """A server that speaks only another ALPN protocol ends the handshake with
    the no_application_protocol alert (RFC 7301 section 3.2); the bridging
    broker logs the TLS failure and nothing is sent."""
    port = free_port()
    server = s_server(pki, port, "-alpn", "mqtt")
    try:
        local = nodes.start(bridging, bridge_block(_Addr(port), topics=["t/# out 1"],
                                                   clientid="alpn-bridge",
                                                   extra=f"bridge_cafile {pki['ca.crt']}\n"
                                                         "bridge_alpn x-amzn-mqtt-ca\n"),
                            name="local")
        server.wait_log(r"no application protocol", timeout=20)
        local.wait_log(r"(?i)alert no application protocol", timeout=20)
        assert "CIPHER is" not in server.log
    finally:
        server.kill()


class _Addr:
    """Something bridge_block can address: 127.0.0.1:port."""

    def __init__(self, port):
        self.host = "127.0.0.1"
        self.port = port


# ---------------------------------------------------------------------------
# bridge_capath


def hashed_dir(tmp_path, name, *certs):
    """A CA directory made as `openssl rehash` expects it (HASH.0 links)."""
    d = tmp_path / name
    d.mkdir()
    for c in certs:
        shutil.copy(c, d / os.path.basename(c))
    r = subprocess.run(["openssl", "rehash", str(d)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert any(re.fullmatch(r"[0-9a-f]{8}\.0", n) for n in os.listdir(d)), os.listdir(d)
    return str(d)


def test_bridge_capath_verifies_remote(nodes, bridging, pki, tmp_path):
    """bridge_capath with the test CA hashed: the bridge verifies the remote
    and messages cross over TLS."""
    remote = tls_remote(nodes, pki)
    capath = hashed_dir(tmp_path, "cas", pki["ca.crt"])
    local = nodes.start(bridging, tls_bridge(remote, f"bridge_capath {capath}\n"), name="local")
    rsub = up_out(local, remote)
    Client(local).publish("t/x", "via-capath", qos=1)
    rsub.wait_payload("via-capath")


def test_bridge_capath_other_ca_refused(nodes, bridging, pki, tmp_path):
    """bridge_capath holding only another CA: verification fails, the reason
    is logged, the remote never sees the bridge's CONNECT."""
    remote = tls_remote(nodes, pki)
    capath = hashed_dir(tmp_path, "cas", pki["other-ca.crt"])
    local = nodes.start(bridging, tls_bridge(remote, f"bridge_capath {capath}\n"), name="local")
    local.wait_log(r"(?i)certificate verify failed", timeout=20)
    assert not re.search(r"New (client|bridge) connected .* as bridge-b1", remote.log)


def test_bridge_capath_missing_directory_named_in_log(nodes, tmp_path, pki):
    """bridge_capath naming no directory: the attempt fails saying so (OpenSSL
    alone would only fail the verification, "self-signed certificate in
    certificate chain", which sends one looking at the remote)."""
    remote = tls_remote(nodes, pki)
    missing = tmp_path / "no-such-dir"
    local = nodes.start("hato", tls_bridge(remote, f"bridge_capath {missing}\n"), name="local")
    local.wait_log(rf"Bridge b1: connecting to 127\.0\.0\.1:\d+ failed: cannot read capath "
                   rf"{re.escape(str(missing))}: No such file or directory", timeout=20)


# ---------------------------------------------------------------------------
# bridge_tls_use_os_certs (hato only: mosquitto 2.0.11 refuses the directive,
# "Unknown configuration variable")


def test_bridge_tls_use_os_certs_rejects_private_ca(nodes, pki):
    """bridge_tls_use_os_certs true alone turns TLS on and verifies against
    the system's CAs: a remote whose certificate is from the test CA (not a
    system CA) fails verification, and the log says so."""
    remote = tls_remote(nodes, pki)
    local = nodes.start("hato", tls_bridge(remote, "bridge_tls_use_os_certs true\n"),
                        name="local")
    local.wait_log(r"(?i)certificate verify failed", timeout=20)
    assert not re.search(r"New (client|bridge) connected .* as bridge-b1", remote.log)


def test_bridge_tls_use_os_certs_accepts_default_store(nodes, pki, monkeypatch):
    """The "system CAs" are OpenSSL's default verify paths, which the
    SSL_CERT_FILE environment variable names: with it pointing at the test CA
    the same remote verifies and messages cross."""
    remote = tls_remote(nodes, pki)
    monkeypatch.setenv("SSL_CERT_FILE", pki["ca.crt"])
    local = nodes.start("hato", tls_bridge(remote, "bridge_tls_use_os_certs true\n"),
                        name="local")
    monkeypatch.delenv("SSL_CERT_FILE")
    rsub = up_out(local, remote)
    Client(local).publish("t/x", "os-store", qos=1)
    rsub.wait_payload("os-store")


# ---------------------------------------------------------------------------
# bridge_bind_address

BIND_IGNORED = ("accepts bridge_bind_address and ignores it: the bridge connects "
                "from 127.0.0.1")


def test_bridge_bind_address_is_the_peer_address(nodes, bridging, request):
    """bridge_bind_address 127.0.0.2: the bridge's socket is bound to that
    address (all of 127/8 is the loopback), so the remote logs it as the peer,
    where every other client of the test comes from 127.0.0.1."""
    mosquitto_differs(request, bridging, BIND_IGNORED)
    bind = "127.0.0.2"
    remote = nodes.start("mosquitto", name="remote")
    local = nodes.start(bridging, bridge_block(remote, topics=["t/# out 1"],
                                               extra=f"bridge_bind_address {bind}\n"),
                        name="local")
    up_out(local, remote).close()
    # Only the bridge and our subscriber/probe clients (all from 127.0.0.1)
    # connect; the bridge's connection is the one whose CONNECT names bridge-b1.
    line = remote.wait_log(r"New (client|bridge) connected from \S+ as bridge-b1", timeout=5)
    peer = re.search(r"connected from (\S+) as", line).group(1)
    assert peer.rsplit(":", 1)[0] == bind, line


def test_bridge_bind_address_unusable_is_logged(nodes, bridging, request):
    """An address of no local interface cannot be bound: the attempt fails
    with the reason in the log and is retried (restart_timeout 1)."""
    mosquitto_differs(request, bridging, BIND_IGNORED)
    remote = nodes.start("mosquitto", name="remote")
    local = nodes.start(bridging, bridge_block(remote, topics=["t/# out 1"],
                                               extra="bridge_bind_address 192.0.2.1\n"),
                        name="local")
    local.wait_log(r"(?i)cannot assign requested address", timeout=20)
    assert "bridge-b1" not in remote.log


# ---------------------------------------------------------------------------
# local_clientid, local_username


def test_local_clientid_default_is_local_dot_remote_clientid(nodes):
    """local_clientid defaults to `local.` + remote_clientid (docs/bridges.md):
    the session name hato's own log shows for the bridge's local side."""
    remote = nodes.start("mosquitto", name="remote")
    local = nodes.start("hato", bridge_block(remote, topics=["t/# out 1"], clientid="rc-77"),
                        name="local")
    local.wait_log(r"New client connected from bridge:b1 as local\.rc-77 ", timeout=20)


@pytest.mark.parametrize("remote_kind", ["mosquitto", "hato"])
def test_local_username_acl_both_ways(nodes, bridging, remote_kind, tmp_path, request):
    """local_username with an acl_file on the bridging broker: the bridge user
    may read out/# but not out/secret, write in/# but not in/denied. So
    out/secret is not forwarded out and in/denied is not delivered in; the
    other topics are. (A `topic read out/ok/#` rule alone would refuse the
    bridge's own SUBSCRIBE to out/#: the rule must cover the whole filter.)"""
    mosquitto_differs(request, bridging, "ACLs do not apply to a bridge's local side "
                      "(local_username is only a name)")
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite #\n\nuser bridgeuser\ntopic read out/#\n"
                   "topic deny out/secret\ntopic write in/#\ntopic deny in/denied\n")
    remote = nodes.start(remote_kind, name="remote")
    local = nodes.start(bridging, bridge_block(remote, topics=["out/# out 1", "in/# in 1"],
                                               extra="local_username bridgeuser\n")
                        + f"acl_file {acl}\n", name="local")
    rsub = up_out(local, remote, topic="out/ok/probe", remote_filter="out/#")
    lsub = up_in(local, remote, topic="in/ok/probe", local_filter="in/#")
    lpub, rpub = Client(local), Client(remote)
    lpub.publish("out/secret", "S", qos=1)
    lpub.publish("out/ok/x", "END", qos=1)
    rpub.publish("in/denied", "D", qos=1)
    rpub.publish("in/ok/x", "END", qos=1)
    assert sentinel_wait(rsub) == []
    assert sentinel_wait(lsub) == []


# ---------------------------------------------------------------------------
# local_cleansession


@pytest.mark.parametrize("clean,local_clean", [("true", "false"), ("false", "true")])
def test_local_cleansession_queue_during_outage(nodes, bridging, tmp_path, clean, local_clean):
    """local_cleansession is the local half of cleansession on its own
    (docs/bridges.md): false keeps the local queue for the remote while it is
    away whatever cleansession says; true starts each connection afresh on the
    local side, so what was published during the outage is not sent."""
    store = tmp_path / "remote-db"
    store.mkdir()
    os.chmod(store, 0o777)
    remote = nodes.start("mosquitto", f"persistence true\npersistence_location {store}/\n",
                         name="remote")
    extra = f"cleansession {clean}\nlocal_cleansession {local_clean}\n"
    local = nodes.start(bridging, bridge_block(remote, topics=["t/# out 1"], extra=extra),
                        name="local")
    state = "$SYS/broker/connection/bridge-b1/state"
    watch = Client(local)
    watch.subscribe(state, qos=1)
    # A persistent subscriber on the remote: what the bridge forwards after
    # the remote's restart waits there for it.
    rsub = Client(remote, "rsub", clean=False)
    rsub.subscribe("t/#", qos=1)
    await_flow(local, rsub, "t/probe")
    rsub.close_settled()
    remote.stop()
    wait_state(watch, state, b"0")
    Client(local).publish("t/queued", "Q", qos=1)
    remote.restart()
    wait_state(watch, state, b"1")
    Client(local).publish("t/end", "END", qos=1)
    rsub = Client(remote, "rsub", clean=False)
    got = sentinel_wait(rsub, timeout=20)
    want = [("t/queued", b"Q", 1, False)] if local_clean == "false" else []
    assert [g for g in got if g[0] != "t/probe"] == want, got


# ---------------------------------------------------------------------------
# restart_timeout


def wait_state(watch, topic, payload, timeout=20):
    """Wait for a new message payload on the state topic (from now on)."""
    seen = len(watch.got)
    deadline = time.monotonic() + timeout
    while not any(g[0] == topic and g[1] == payload for g in watch.got[seen:]):
        assert time.monotonic() < deadline, f"no {payload!r} on {topic}: {watch.got!r}"
        watch.poll(0.1)


def attempt_times(node, count, timeout):
    """Monotonic times of the first `count` "Connecting bridge b1" log lines
    (the bridge's connection attempts), as they are read."""
    times = []
    start = 0
    deadline = time.monotonic() + timeout
    while len(times) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"{len(times)} attempts in {timeout}s:\n{node.log[-3000:]}"
        line = node.wait_log(r"Connecting bridge b1\b|Connecting bridge \(step 1\) b1\b",
                             timeout=left, start=start)
        times.append(time.monotonic())
        with node.cond:
            start = node.lines.index(line, start) + 1
    return times


@pytest.mark.parametrize("setting,lo,hi", [("1", 0.6, 2.0), ("3", 2.4, 4.5),
                                           ("1 2", 0.6, 3.0)])
def test_restart_timeout_spacing_against_dead_port(nodes, bridging, setting, lo, hi, request):
    """restart_timeout against a port nobody listens on: the gaps between
    connection attempts stay within generous bounds of the setting (constant
    SECONDS; BASE CAP: each wait between BASE and CAP)."""
    mosquitto_differs(request, bridging, "against a refused port the attempts are not "
                      "spaced by restart_timeout: 6 then 10 s apart with `1` or `3`, 2-3 s "
                      "with `1 2` (over the cap)")
    dead = free_port()
    local = nodes.start(bridging, bridge_block(_Addr(dead), topics=["t/# out 1"]).replace(
        "restart_timeout 1\n", f"restart_timeout {setting}\n"), name="local")
    times = attempt_times(local, 4, timeout=4 * hi + 10)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert all(lo <= g <= hi for g in gaps), (setting, gaps)


# ---------------------------------------------------------------------------
# WebSocket addresses (ours: Mosquitto 2.0 bridges speak MQTT over TCP only)


def ws_remote(nodes, kind, pki=None):
    """A broker with a plain MQTT listener for the test's clients and a
    WebSocket one (over TLS when pki is given) for the bridge."""
    ws_port = free_port()
    conf = f"listener {ws_port} 127.0.0.1\nprotocol websockets\n"
    if pki:
        conf += (f"cafile {pki['ca.crt']}\ncertfile {pki['server.crt']}\n"
                 f"keyfile {pki['server.key']}\n")
    if kind == "hato":
        conf += "websockets_log_level 1\n"
    remote = nodes.start(kind, conf, name="remote")
    remote.ws_port = ws_port
    return remote


@pytest.mark.parametrize("remote_kind", ["mosquitto", "hato"])
@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_ws_address_both_ways(nodes, remote_kind, scheme, pki):
    """address ws://HOST:PORT/PATH (wss:// over TLS with bridge_cafile): the
    bridge speaks MQTT over WebSocket to the remote's websockets listener,
    and messages flow both ways."""
    remote = ws_remote(nodes, remote_kind, pki if scheme == "wss" else None)
    extra = f"bridge_cafile {pki['ca.crt']}\n" if scheme == "wss" else ""
    block = bridge_block(remote, topics=["o/# out 1", "i/# in 1"], extra=extra,
                         address=f"{scheme}://127.0.0.1:{remote.ws_port}/mqtt")
    local = nodes.start("hato", block, name="local")
    rsub = up_out(local, remote, topic="o/probe", remote_filter="o/#")
    lsub = up_in(local, remote, topic="i/probe", local_filter="i/#")
    Client(local).publish("o/x", "out-over-ws", qos=1)
    Client(remote).publish("i/x", "in-over-ws", qos=1)
    rsub.wait_payload("out-over-ws")
    lsub.wait_payload("in-over-ws")
    if remote_kind == "hato":
        remote.wait_log(rf"WebSocket connection from \S+ on port {remote.ws_port} upgraded")


def test_ws_address_sends_path_and_mqtt_subprotocol(nodes):
    """The HTTP upgrade the bridge sends: GET with the address's path, the
    Host, and Sec-WebSocket-Protocol mqtt (MQTT-6.0.0-3). Read off the
    socket by a listener of the test's, which answers nothing."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(20)
    port = srv.getsockname()[1]
    got = {}

    def accept():
        try:
            c, _ = srv.accept()
        except OSError:
            return
        c.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data and len(data) < 8192:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        got["req"] = data
        c.close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        nodes.start("hato", bridge_block(_Addr(port), topics=["t/# out 1"],
                                         address=f"ws://127.0.0.1:{port}/a/b?x=1"),
                    name="local")
        t.join(25)
    finally:
        srv.close()
    req = got.get("req", b"").decode("latin-1")
    head, _, _ = req.partition("\r\n\r\n")
    lines = head.split("\r\n")
    assert lines[0] == "GET /a/b?x=1 HTTP/1.1", req
    hdr = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    assert hdr.get("host") == f"127.0.0.1:{port}", req
    assert hdr.get("upgrade", "").lower() == "websocket", req
    assert "mqtt" in [p.strip() for p in hdr.get("sec-websocket-protocol", "").split(",")], req
    assert hdr.get("sec-websocket-version") == "13", req


def test_ws_address_refused_upgrade_is_logged(nodes):
    """A remote that answers the upgrade with a plain MQTT listener (no HTTP):
    the attempt fails with a reason in the log, and is retried."""
    remote = nodes.start("mosquitto", name="remote")
    local = nodes.start("hato", bridge_block(remote, topics=["t/# out 1"],
                                             address=f"ws://127.0.0.1:{remote.port}/mqtt"),
                        name="local")
    local.wait_log(r"Bridge b1: connecting to 127\.0\.0\.1:\d+ failed: ", timeout=20)
    m = local.mark()
    local.wait_log(r"Connecting bridge b1", timeout=20, start=m)
    assert count_lines(local, r"Bridge b1 connected") == 0
