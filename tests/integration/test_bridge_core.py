"""The bridge engine (src/broker/bridge.c, docs/internals/bridge.md): hato with a
Mosquitto `connection` block, bridging to a real mosquitto 2.0.11 or to a second
hato, each started here on an ephemeral loopback port and stopped by PID.

Clients are paho-mqtt; every wait is an event with a deadline (a log line, a
message received). Where the bridge must be up first, the test waits for the
bridge's own "connected" log line and for its SUBACKs on the remote side by
probing: a message published every 0.2 s until one arrives.
"""

import os
import signal
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from conftest import HATO_BIN, RUN_AS, SANITIZER_MARKS, LoggedProcess, free_port

MOSQUITTO = "/usr/sbin/mosquitto"
REMOTES = ("mosquitto", "hato")


class Node(LoggedProcess):
    """A broker (mosquitto or hato) on a loopback port with `config` after the
    listener lines; restart() starts it again on the same port."""

    def __init__(self, kind, tmp_path, config="", port=None, listener=None, anonymous=True):
        self.kind = kind
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.tmp_path = tmp_path
        self.config = config
        self.listener = listener
        self.anonymous = anonymous
        self.path = os.path.join(str(tmp_path), f"{kind}-{self.port}.conf")
        self._start()

    def text(self):
        t = "log_dest stderr\nlog_type all\n" + RUN_AS
        if self.kind == "hato":
            t += "auth_fail_delay 0\n"
        t += self.listener if self.listener is not None else f"listener {self.port} 127.0.0.1\n"
        t += f"allow_anonymous {'true' if self.anonymous else 'false'}\n"
        return t + self.config

    def _start(self):
        with open(self.path, "w") as f:
            f.write(self.text())
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        super().__init__([HATO_BIN if self.kind == "hato" else MOSQUITTO, "-c", self.path], env)
        self.wait_log(r"version \S+ running", timeout=15)

    def restart(self):
        self.lines = []
        self._start()

    def reload(self, config):
        self.config = config
        with open(self.path, "w") as f:
            f.write(self.text())
        m = self.mark()
        self.signal(signal.SIGHUP)
        return m

    def stop(self, check=True):
        rc, in_time = self.terminate(timeout=15)
        if check:
            assert in_time, f"{self.kind} did not stop:\n{self.log}"
            for mark in SANITIZER_MARKS:
                assert mark not in self.log, self.log
            if self.kind == "hato":
                assert rc == 0, f"hato exit status {rc}:\n{self.log}"


@pytest.fixture
def nodes(tmp_path):
    started = []

    def start(kind, config="", **kw):
        n = Node(kind, tmp_path, config, **kw)
        started.append(n)
        return n

    yield start
    errors = []
    for n in started:
        if n.proc.poll() is None or n.proc.returncode is not None:
            try:
                n.stop(check=n.proc.returncode in (None, 0))
            except AssertionError as e:
                errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors))


class Sub:
    """A paho client that keeps (topic, payload, qos, retain) of what it receives."""

    def __init__(self, node, *filters, qos=1, client_id="", clean=True, version=mqtt.MQTTv311):
        self.got = []
        self.cond = threading.Condition()
        self.c = mqtt.Client(client_id=client_id, clean_session=clean, protocol=version)
        self.c.on_message = self._on_message
        subacks = []
        self.c.on_subscribe = lambda c, u, mid, q: subacks.append(mid)
        self.c.connect(node.host, node.port, keepalive=30)
        self.c.loop_start()
        n = 0
        for f in filters:
            self.c.subscribe(f, qos)
            n += 1
        wait_for(lambda: len(subacks) >= n, "SUBACK")

    def _on_message(self, c, u, m):
        with self.cond:
            self.got.append((m.topic, m.payload, m.qos, bool(m.retain)))
            self.cond.notify_all()

    def wait(self, pred, what, timeout=10):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.got):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; got {self.got!r}")
                self.cond.wait(left)

    def topics(self):
        with self.cond:
            return [g[0] for g in self.got]

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def wait_for(pred, what, timeout=10):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def pub(node, topic, payload, qos=1, retain=False):
    c = mqtt.Client()
    c.connect(node.host, node.port, keepalive=30)
    c.loop_start()
    info = c.publish(topic, payload, qos=qos, retain=retain)
    info.wait_for_publish(10)
    assert info.is_published()
    c.disconnect()
    c.loop_stop()


def pub_seq(node, topic, payloads, qos=1):
    """Publish payloads in order from one client, each acknowledged before the
    next. One publisher: MQTT orders messages per publisher (MQTT-4.6.0-6);
    two clients' messages may be routed by different workers and overtake."""
    c = mqtt.Client()
    c.connect(node.host, node.port, keepalive=30)
    c.loop_start()
    for p in payloads:
        info = c.publish(topic, p, qos=qos)
        info.wait_for_publish(10)
        assert info.is_published()
    c.disconnect()
    c.loop_stop()


def probe(sender, topic, sub, timeout=10, arrives=None):
    """Publish on `topic` every 0.2 s until sub has received it (as `arrives`
    when the bridge renames it): the bridge's subscriptions are in place.
    Returns the number sent."""
    deadline = time.monotonic() + timeout
    n = 0
    want = arrives or topic
    while want not in sub.topics():
        if time.monotonic() > deadline:
            raise AssertionError(f"{topic} never crossed the bridge")
        pub(sender, topic, b"probe", qos=0)
        n += 1
        t = time.monotonic() + 0.2
        while time.monotonic() < t and want not in sub.topics():
            time.sleep(0.01)
    return n


def block(remote, topics, extra="", name="b1", clientid="rc1"):
    t = f"connection {name}\naddress {remote.host}:{remote.port}\nremote_clientid {clientid}\n"
    t += "restart_timeout 1\n"
    for tp in topics:
        t += f"topic {tp}\n"
    return t + extra


@pytest.mark.parametrize("remote_kind", REMOTES)
def test_directions_prefixes_and_qos(nodes, remote_kind):
    """out/in/both with local and remote prefixes, the empty-pattern rename, and
    the forwarded QoS = min(pattern QoS, message QoS) (mosquitto.conf(5) `topic`)."""
    remote = nodes(remote_kind)
    local = nodes("hato", block(remote, [
        "o/# out 1 l/ r/",
        "i/# in 2 l/ r/",
        "b/# both 1",
        '"" out 1 loc/exact rem/renamed',
        "q0/# out 0",
    ]))
    local.wait_log(r"Bridge b1 connected to 127\.0\.0\.1")
    rs = Sub(remote, "#", qos=2)
    ls = Sub(local, "#", qos=2)
    probe(local, "b/probe-out", rs)
    probe(remote, "b/probe-in", ls)
    probe(remote, "r/i/probe", ls, arrives="l/i/probe")
    pub(local, "l/o/x", b"1", qos=1)
    pub(remote, "r/i/y", b"2", qos=2)
    pub(local, "loc/exact", b"3", qos=1)
    pub(local, "q0/z", b"4", qos=1)
    pub(local, "o/unprefixed", b"5", qos=1)  # no rule: stays local
    rs.wait(lambda g: {"r/o/x", "rem/renamed", "q0/z"} <= {x[0] for x in g}, "out messages")
    ls.wait(lambda g: "l/i/y" in [x[0] for x in g], "in message")
    got = {t: (p, q) for t, p, q, _ in rs.got}
    assert got["r/o/x"] == (b"1", 1)
    assert got["rem/renamed"] == (b"3", 1)
    assert got["q0/z"] == (b"4", 0)  # pattern QoS 0 caps it
    lgot = {t: (p, q) for t, p, q, _ in ls.got}
    assert lgot["l/i/y"] == (b"2", 2)
    assert "l/i/probe" in lgot
    # Not bridged: a topic no rule names, and the echo of a 'both' message.
    pub(local, "b/last", b"end", qos=1)
    rs.wait(lambda g: "b/last" in [x[0] for x in g], "b/last")
    assert "o/unprefixed" not in rs.topics()
    assert "r/o/unprefixed" not in rs.topics()
    assert ls.topics().count("b/last") == 1, "a 'both' message came back (no-local)"
    assert rs.topics().count("b/probe-in") <= ls.topics().count("b/probe-in")
    rs.close()
    ls.close()


@pytest.mark.parametrize("remote_kind", REMOTES)
def test_qos1_remote_outage_no_loss_no_duplicate(nodes, remote_kind, tmp_path):
    """QoS 1 out while the remote is away: hato's session of the bridge queues
    what it cannot send; after the remote is back on the same port everything is
    delivered, in order, once (the bridge acks hato only once the remote acked)."""
    store = tmp_path / f"store-{remote_kind}"
    store.mkdir()
    remote = nodes(remote_kind, f"persistence true\npersistence_location {store}/\n")
    local = nodes("hato", block(remote, ["m/# out 1"]))
    local.wait_log(r"Bridge b1 connected")
    rs = Sub(remote, "m/#", qos=1, client_id="remote-sub", clean=False)
    probe(local, "m/probe", rs)
    pub_seq(local, "m/seq", [f"{i}".encode() for i in range(20)])
    rs.wait(lambda g: len([x for x in g if x[0] == "m/seq"]) == 20, "20 before the outage")
    rs.close()
    mark = local.mark()
    remote.stop()
    local.wait_log(r"Bridge b1: connection to 127\.0\.0\.1:\d+ lost", start=mark)
    pub_seq(local, "m/seq", [f"{i}".encode() for i in range(20, 40)])
    remote.restart()
    local.wait_log(r"Bridge b1 connected", start=mark, timeout=20)
    rs = Sub(remote, client_id="remote-sub", clean=False)
    rs.wait(lambda g: len([x for x in g if x[0] == "m/seq"]) >= 20, "20 after the outage",
            timeout=20)
    # Everything the bridge had is in: one more message marks the end.
    pub(local, "m/seq", b"end", qos=1)
    rs.wait(lambda g: (g and g[-1][1] == b"end"), "end marker")
    seq = [p.decode() for t, p, q, r in rs.got if t == "m/seq" and p != b"end"]
    assert seq == [str(i) for i in range(20, 40)], seq
    rs.close()


@pytest.mark.parametrize("remote_kind", REMOTES)
def test_notifications(nodes, remote_kind):
    """notifications: "1" retained on $SYS/broker/connection/<remote_clientid>/state
    locally and remotely on connect; "0" locally when the remote goes, and on the
    remote through the bridge's will when hato dies."""
    remote = nodes(remote_kind)
    local = nodes("hato", block(remote, ["n/# out 0"]))
    topic = "$SYS/broker/connection/rc1/state"
    local.wait_log(r"Bridge b1 connected")
    ls = Sub(local, topic)
    # "Connected" is logged at the remote's CONNACK, the local "1" follows:
    # this subscriber may get it live; a second one must get it retained.
    ls.wait(lambda g: (topic, b"1") in [x[:2] for x in g], "local 1")
    late = Sub(local, topic)
    late.wait(lambda g: (topic, b"1", 1, True) in g, "local 1 (retained)")
    late.close()
    # A hato remote keeps $SYS to itself, from bridges too (a will to $SYS is
    # dropped): the remote half is Mosquitto's behaviour only.
    remote_side = remote_kind == "mosquitto"
    if remote_side:
        rs = Sub(remote, topic)
        rs.wait(lambda g: any(x[0] == topic and x[1] == b"1" and x[3] for x in g),
                "remote 1 (retained)")
        rs.close()
    remote.stop()
    ls.wait(lambda g: g[-1][:2] == (topic, b"0"), "local 0 after the remote left")
    remote.restart()
    ls.wait(lambda g: g[-1][:2] == (topic, b"1"), "local 1 again", timeout=20)
    ls.close()
    if remote_side:
        rs = Sub(remote, topic)
        rs.wait(lambda g: g and g[-1][1] == b"1", "remote 1 again")
        local.proc.send_signal(signal.SIGKILL)
        local.proc.wait()
        rs.wait(lambda g: g[-1][:2] == (topic, b"0"), "remote 0 from the will", timeout=20)
        rs.close()


def test_notification_topic_and_local_only(nodes):
    remote = nodes("mosquitto")
    local = nodes("hato", block(remote, ["x/# out 0"], "notification_topic bridges/b1\n"
                                                      "notifications_local_only true\n"))
    local.wait_log(r"Bridge b1 connected")
    ls = Sub(local, "bridges/b1")
    # Live or retained, as in test_notifications; retained for a later one.
    ls.wait(lambda g: ("bridges/b1", b"1") in [x[:2] for x in g], "local notification")
    late = Sub(local, "bridges/b1")
    late.wait(lambda g: ("bridges/b1", b"1", 1, True) in g, "local notification (retained)")
    late.close()
    rs = Sub(remote, "bridges/#", "$SYS/broker/connection/#")
    pub(remote, "bridges/zz", b"marker", qos=1)
    rs.wait(lambda g: "bridges/zz" in [x[0] for x in g], "marker")
    assert "bridges/b1" not in rs.topics()
    lines = remote.log.splitlines()
    i = next(k for k, l in enumerate(lines) if "as rc1 (" in l)
    assert "No will message specified" in lines[i + 1], lines[i:i + 2]
    rs.close()
    ls.close()


def test_notifications_false(nodes):
    remote = nodes("mosquitto")
    local = nodes("hato", block(remote, ["x/# out 0"], "notifications false\n"))
    local.wait_log(r"Bridge b1 connected")
    ls = Sub(local, "$SYS/broker/connection/#", "x/#")
    rs = Sub(remote, "x/#")
    probe(local, "x/p", rs)
    assert not [g for g in ls.got if g[0].startswith("$SYS")]
    ls.close()
    rs.close()


def test_failed_attempts_are_logged_with_reason(nodes, tmp_path):
    """Refused TCP, a refused login with its CONNACK code, an unknown host."""
    pw = tmp_path / "pw"
    import subprocess
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "alice", "secret"], check=True,
                   capture_output=True)
    remote = nodes("mosquitto", f"password_file {pw}\n", anonymous=False)
    dead = free_port()
    local = nodes("hato",
                  block(remote, ["a/# out 0"], "remote_username alice\nremote_password wrong\n") +
                  f"connection b2\naddress 127.0.0.1:{dead}\ntopic a/# out 0\nrestart_timeout 1\n"
                  "connection b3\naddress no-such-host.invalid:1883\ntopic a/# out 0\n")
    local.wait_log(r"Bridge b1: connecting to 127\.0\.0\.1:\d+ failed: Connection Refused: "
                   r"not authori[sz]ed \(CONNACK code 5\)\.")
    local.wait_log(rf"Bridge b2: connecting to 127\.0\.0\.1:{dead} failed: .*[Cc]onnection refused")
    local.wait_log(r"Bridge b3: connecting to no-such-host\.invalid:1883 failed: ")


def test_remote_credentials_and_connect_settings(nodes, tmp_path):
    """remote_username/password, remote_clientid, keepalive_interval, cleansession
    and try_private as the remote mosquitto logs them."""
    import subprocess
    pw = tmp_path / "pw"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "alice", "secret"], check=True,
                   capture_output=True)
    remote = nodes("mosquitto", f"password_file {pw}\n", anonymous=False)
    local = nodes("hato", block(remote, ["a/# out 0"], "remote_username alice\n"
                                "remote_password secret\nkeepalive_interval 17\ncleansession true\n",
                                clientid="custom-rc"))
    local.wait_log(r"Bridge b1 connected")
    line = remote.wait_log(r"New bridge connected from .* as custom-rc")
    assert "k17" in line and "c1" in line and "u'alice'" in line, line


def test_try_private_false_and_protocol_v5(nodes):
    remote = nodes("mosquitto")
    nodes("hato", block(remote, ["a/# out 0"], "try_private false\n", name="b1", clientid="plain") +
          block(remote, ["a/# out 0"], "bridge_protocol_version mqttv50\n", name="b2",
                clientid="five"))
    # try_private false: an ordinary client (Mosquitto's p2 is MQTT 3.1.1).
    line = remote.wait_log(r"New client connected from .* as plain")
    assert "p2" in line, line
    line = remote.wait_log(r"as five \(")
    assert "p5" in line, line


def test_to_second_hato_local_username_acl(nodes, tmp_path):
    """local_username: hato's ACLs apply to what the bridge publishes locally."""
    acl = tmp_path / "acl"
    acl.write_text("topic read #\n\nuser bridgeuser\ntopic write in/ok/#\n")
    remote = nodes("hato")
    local = nodes("hato", block(remote, ["in/# in 1"], "local_username bridgeuser\n") +
                  f"acl_file {acl}\n")
    local.wait_log(r"Bridge b1 connected")
    ls = Sub(local, "in/#")
    probe(remote, "in/ok/probe", ls)
    pub(remote, "in/denied", b"x", qos=1)
    pub(remote, "in/ok/after", b"y", qos=1)
    ls.wait(lambda g: "in/ok/after" in [x[0] for x in g], "allowed message")
    assert "in/denied" not in ls.topics()
    ls.close()


def test_local_clientid_and_cleansession(nodes):
    remote = nodes("mosquitto")
    local = nodes("hato", block(remote, ["a/# out 0"], "local_clientid my-local\n"))
    local.wait_log(r"Bridge b1 connected")
    local.wait_log(r"New client connected from bridge:b1 as my-local")


def test_failover_addresses_and_round_robin(nodes):
    """address with a dead first entry: the bridge moves on to the second."""
    remote = nodes("mosquitto")
    dead = free_port()
    local = nodes("hato", f"connection b1\naddresses 127.0.0.1:{dead} "
                          f"127.0.0.1:{remote.port}\nround_robin true\nrestart_timeout 1\n"
                          "topic f/# out 0\n")
    local.wait_log(rf"connecting to 127\.0\.0\.1:{dead} failed")
    local.wait_log(rf"Bridge b1 connected to 127\.0\.0\.1:{remote.port}", timeout=15)


def test_start_type_once(nodes):
    remote = nodes("mosquitto")
    local = nodes("hato", block(remote, ["a/# out 0"], "start_type once\n"))
    local.wait_log(r"Bridge b1 connected")
    remote.stop()
    local.wait_log(r"Bridge b1: start_type once: not reconnecting")
    remote.restart()
    m = local.mark()
    # Three restart_timeouts without an attempt.
    pub(remote, "a/x", b"x", qos=0)
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        assert "Connecting bridge b1" not in "\n".join(
            l for l in local.lines[m:] if l), local.log
        time.sleep(0.1)


def test_start_type_once_retries_until_first_connection(nodes):
    """start_type once stops reconnecting only after a connection that was up has
    ended: a remote that is not listening yet when hato starts is still reached (the
    failed attempts before the first CONNACK are retried every restart_timeout)."""
    import types
    port = free_port()
    absent = types.SimpleNamespace(host="127.0.0.1", port=port)  # nothing listens yet
    local = nodes("hato", block(absent, ["a/# out 0"], "start_type once\n"))
    local.wait_log(r"Connecting bridge b1")
    nodes("mosquitto", port=port)
    local.wait_log(r"Bridge b1 connected", timeout=20)
    assert "start_type once: not reconnecting" not in local.log


def test_outgoing_retain_false_and_retained_in(nodes):
    """bridge_outgoing_retain false sends retained messages unretained."""
    remote = nodes("mosquitto")
    local = nodes("hato", block(remote, ["keep/# out 1"]) +
                  block(remote, ["nr/# out 1"], "bridge_outgoing_retain false\n", name="b2",
                        clientid="rc2"))
    local.wait_log(r"Bridge b1 connected")
    local.wait_log(r"Bridge b2 connected")
    rs = Sub(remote, "keep/#", "nr/#")
    probe(local, "keep/probe", rs)
    probe(local, "nr/probe", rs)
    pub(local, "nr/r", b"n", qos=1, retain=True)
    pub(local, "keep/r", b"k", qos=1, retain=True)
    rs.wait(lambda g: {"keep/r", "nr/r"} <= {x[0] for x in g}, "keep/r and nr/r")
    live = {t: r for t, p, q, r in rs.got}
    rs.close()
    # Retained on the remote only through b1. The remote answers the two
    # SUBSCRIBEs in order: a retained nr/r would come before keep/r.
    late = Sub(remote, "nr/r", "keep/r")
    late.wait(lambda g: "keep/r" in [x[0] for x in g], "retained keep/r on the remote")
    assert "nr/r" not in late.topics(), "\n".join(l for l in remote.log.splitlines() if "nr/" in l)
    assert [g for g in late.got if g[0] == "keep/r"][0][3] is True
    assert live["nr/r"] is False and live["keep/r"] is False  # live copies: never retained
    late.close()
    pub(local, "keep/r", b"", qos=1, retain=True)


def test_max_packet_size(nodes):
    remote = nodes("mosquitto")
    local = nodes("hato", block(remote, ["big/# out 1"], "bridge_max_packet_size 200\n"))
    local.wait_log(r"Bridge b1 connected")
    rs = Sub(remote, "big/#")
    probe(local, "big/probe", rs)
    pub(local, "big/large", b"x" * 500, qos=1)
    pub(local, "big/small", b"y" * 10, qos=1)
    rs.wait(lambda g: "big/small" in [x[0] for x in g], "small message")
    assert "big/large" not in rs.topics()
    local.wait_log(r"over bridge_max_packet_size 200: not sent")
    rs.close()


def test_reload_adds_removes_and_keeps(nodes):
    """SIGHUP: an unchanged bridge keeps its connection, a new one starts, a
    removed one stops; a bad bridge block keeps the running config."""
    remote = nodes("mosquitto")
    b1 = block(remote, ["a/# out 0"])
    local = nodes("hato", b1)
    local.wait_log(r"Bridge b1 connected")
    b2 = block(remote, ["b/# out 0"], name="b2", clientid="rc2")
    m = local.reload(b1 + b2)
    local.wait_log(r"Bridge b2 connected", start=m)
    local.wait_log(r"Reloaded config", start=m)
    assert "Connecting bridge b1" not in "\n".join(l for l in local.lines[m:] if l)
    m = local.reload(b2)
    local.wait_log(r"Bridge b1: removed by the reload", start=m)
    remote.wait_log(r"Client rc1 disconnected")
    m = local.reload(b2 + "connection b9\ntopic z/# sideways\n")
    local.wait_log(r"topic: direction 'sideways' is not in, out or both", start=m)
    rs = Sub(remote, "b/#")
    probe(local, "b/still", rs)
    rs.close()


def test_tls_to_remote(nodes, pki):
    """bridge_cafile to a TLS listener of mosquitto with a generated CA; a
    wrong CA fails with the verify reason; bridge_insecure skips the name."""
    port = free_port()
    listener = (f"listener {port} 127.0.0.1\ncafile {pki['ca.crt']}\ncertfile {pki['server.crt']}\n"
                f"keyfile {pki['server.key']}\n")
    remote = nodes("mosquitto", listener=listener, port=port)
    rs_port = free_port()
    plain = nodes("mosquitto", listener=f"listener {rs_port} 127.0.0.1\n", port=rs_port)
    del plain
    local = nodes("hato",
                  f"connection b1\naddress 127.0.0.1:{port}\nbridge_cafile {pki['ca.crt']}\n"
                  "restart_timeout 1\ntopic t/# out 1\nremote_clientid tls1\n"
                  f"connection b2\naddress 127.0.0.1:{port}\nbridge_cafile {pki['other-ca.crt']}\n"
                  "restart_timeout 5\ntopic t/# out 1\nremote_clientid tls2\n"
                  f"connection b3\naddress localhost:{port}\nbridge_cafile {pki['ca.crt']}\n"
                  f"bridge_certfile {pki['client.crt']}\nbridge_keyfile {pki['client.key']}\n"
                  "bridge_insecure true\nbridge_tls_version tlsv1.2\n"
                  "restart_timeout 1\ntopic u/# out 1\nremote_clientid tls3\n")
    local.wait_log(r"Bridge b1 connected")
    local.wait_log(r"Bridge b2: connecting to 127\.0\.0\.1:\d+ failed: .*certificate verify failed")
    local.wait_log(r"Bridge b3 connected")
    # Messages cross over TLS (subscriber on the TLS listener).
    c = mqtt.Client()
    c.tls_set(ca_certs=pki["ca.crt"])
    got = []
    c.on_message = lambda cl, u, m: got.append(m.topic)
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.subscribe("t/#", 1)
    deadline = time.monotonic() + 10
    while "t/x" not in got:
        assert time.monotonic() < deadline, "t/x never arrived over TLS"
        pub(local, "t/x", b"1", qos=1)
        time.sleep(0.2)
    c.disconnect()
    c.loop_stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    from tlspki import make_pki
    d = tmp_path_factory.mktemp("bridge-pki")
    make_pki(d)
    return {n: os.path.join(str(d), n) for n in os.listdir(str(d))}


def test_refused_directives_name_themselves(tmp_path):
    """Options the engine does not implement stop start-up with a reason."""
    import subprocess
    conf = tmp_path / "c.conf"
    conf.write_text("connection b1\naddress 127.0.0.1:1\nbridge_ciphers ALL\n")
    r = subprocess.run([HATO_BIN, "--test-config", "-c", str(conf)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0
    assert f"{conf}:3: bridge_ciphers: bridge option hato does not implement" in r.stdout + r.stderr
