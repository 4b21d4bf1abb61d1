"""Bridges (issue 16): what is queued while the remote is away, and how durably.
cleansession false, restart of the remote (by PID, same port), persistence of
the bridging broker, start_type once|lazy with threshold and idle_timeout.
Run with mosquitto and with hato as the bridging broker (see bridgekit).

hato only (its own directives or behaviour): bridge_max_queued_messages, the
local session registered before the first remote attempt, local_password
checked against password_file. Both bridging brokers: MQTT 5 PUBLISH
properties over an mqttv50 bridge.
"""


import os
import queue
import re
import subprocess
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from bridgekit import (Client, await_flow, bridge_block, bridging, count_lines,  # noqa: F401
                       mosquitto_differs, nodes, sentinel_wait, up_out)
from conftest import HATO_BIN, free_port
from mqttraw import RawClient

pytestmark = pytest.mark.hato_only("starts mosquitto and hato itself, both as bridges")

STATE = "$SYS/broker/connection/bridge-b1/state"


def persistent_remote(nodes, tmp_path):
    """A mosquitto remote that keeps sessions across its own restart."""
    d = tmp_path / "remote-db"
    d.mkdir()
    return nodes.start("mosquitto", f"persistence true\npersistence_location {d}/\n",
                       name="remote")


def remote_reader(remote):
    """A persistent subscriber on the remote (its session survives the remote's restart)."""
    c = Client(remote, "reader", clean=False)
    c.subscribe("q/#", qos=2)
    return c


def down(local_state, remote):
    """Stop the remote by PID; wait until the bridging broker reports the link down."""
    remote.stop(check=False)
    local_state.wait_payload("0", timeout=20)


def check_delivered(got, want, qos):
    payloads = [p for _, p, _, _ in got]
    if qos == 2:
        assert payloads == want, "QoS 2: every message exactly once, in order"
    else:
        first = []
        for p in payloads:
            if p not in first:
                first.append(p)
        assert first == want, "QoS 1: every message, in order (duplicates allowed)"


@pytest.mark.parametrize("qos", [1, 2])
def test_cleansession_false_outage_in_order(nodes, bridging, tmp_path, qos):
    """Remote stopped during a flow and restarted on the same port: what was
    published locally before, during and after the outage arrives, in order."""
    remote = persistent_remote(nodes, tmp_path)
    reader = remote_reader(remote)
    local = nodes.start(bridging, bridge_block(remote, topics=[f"q/# out {qos}"],
                                               extra="cleansession false\n"), name="local")
    state = Client(local)
    state.subscribe(STATE)
    state.wait_payload("1")
    up_out(local, remote, "q/probe", "q/#", rsub=reader)
    pub = Client(local)
    want = [f"m{i:02}".encode() for i in range(30)]
    for p in want[:10]:
        pub.publish("q/x", p, qos=qos)
    reader.wait_payload(want[9])
    before = reader.data()
    reader.close_settled()
    down(state, remote)
    for p in want[10:20]:
        pub.publish("q/x", p, qos=qos)  # acknowledged locally while the remote is down
    remote.restart()
    reader = Client(remote, "reader", clean=False)
    assert reader.connack.session_present
    for p in want[20:]:
        pub.publish("q/x", p, qos=qos)
    pub.publish("q/x", "END", qos=qos)
    after = sentinel_wait(reader, timeout=30)
    check_delivered(before + after, want, qos)


def test_persistence_bridging_restart_while_remote_down(nodes, bridging, tmp_path):
    """The bridging broker (persistence true) is restarted while the remote is
    down: the messages it acknowledged before are still delivered afterwards."""
    remote = persistent_remote(nodes, tmp_path)
    reader = remote_reader(remote)
    d = tmp_path / "local-db"
    d.mkdir()
    conf = f"persistence true\npersistence_location {d}/\n" + bridge_block(
        remote, topics=["q/# out 1"], extra="cleansession false\n")
    local = nodes.start(bridging, conf, name="local")
    state = Client(local)
    state.subscribe(STATE)
    state.wait_payload("1")
    up_out(local, remote, "q/probe", "q/#", rsub=reader)
    reader.close_settled()
    down(state, remote)
    pub = Client(local)
    want = [f"d{i:02}".encode() for i in range(10)]
    for p in want:
        pub.publish("q/x", p, qos=1)
    pub.close()
    state.close()
    local.stop()
    assert any(f.is_file() for f in d.iterdir()), "no persistence file written"
    local.restart()
    remote.restart()
    pub = Client(local)
    pub.publish("q/x", "END", qos=1)
    reader = Client(remote, "reader", clean=False)
    check_delivered(sentinel_wait(reader, timeout=30), want, 1)


# ---------------------------------------------------------------------------
# start_type


def test_start_type_once(nodes, bridging, request):
    """start_type once: connected at start, not again after the remote goes;
    an automatic connection in the same broker shows the remote is back."""
    mosquitto_differs(request, bridging, "a start_type once bridge never connects: its log "
                      "stops at 'Connecting bridge (step 1) once'")
    remote = nodes.start("mosquitto", name="remote")
    conf = (bridge_block(remote, "once", ["o/# out 0"], "start_type once\n")
            + bridge_block(remote, "auto", ["a/# out 0"]))
    local = nodes.start(bridging, conf, name="local")
    rsub = up_out(local, remote, "o/probe", "o/#")
    state = Client(local)
    state.subscribe("$SYS/broker/connection/bridge-auto/state")
    state.wait_payload("1")
    state.clear()
    remote.stop(check=False)
    state.wait_payload("0", timeout=20)
    remote.restart()
    # Two reconnections of the automatic bridge: two restart_timeouts elapsed.
    for round_ in range(2):
        state.clear()
        state.wait_payload("1", timeout=30)
        asub = up_out(local, remote, "a/probe", "a/#")
        asub.close()
        if round_ == 0:
            remote.stop(check=False)
            state.wait_payload("0", timeout=20)
            remote.restart()
    rsub = Client(remote)
    rsub.subscribe("o/#", "a/#", qos=1)
    pub = Client(local)
    pub.publish("o/x", "once?", qos=1)
    pub.publish("a/x", "END", qos=1)
    rsub.wait_payload("END")
    rsub.poll(0.5)
    assert [m for m in rsub.data() if m[1] == b"once?"] == []


def lazy_bridge(nodes, bridging, idle_timeout=60):
    remote = nodes.start("mosquitto", name="remote")
    extra = f"start_type lazy\nthreshold 5\nidle_timeout {idle_timeout}\ncleansession false\n"
    local = nodes.start(bridging, bridge_block(remote, topics=["z/# out 1"], extra=extra),
                        name="local")
    if bridging == "hato":
        # The lazy bridge's local side subscribes after start-up: counting
        # starts once hato has answered it (Mosquitto's is in place already).
        local.wait_log(r"Sending SUBACK to local\.bridge-b1", timeout=15)
    rsub = Client(remote)
    rsub.subscribe("z/#", qos=1)
    pub = Client(local)
    m = remote.mark()
    for i in range(5):
        pub.publish("z/x", f"l{i}", qos=1)
    # Not above the threshold yet: the remote has seen no bridge. (A late
    # connection would be caught by the next test's "all 8" only as a pass,
    # so this check is what proves the threshold.)
    assert not any("bridge-b1" in (l or "") for l in remote.lines[m:]), remote.log
    for i in range(5, 8):
        pub.publish("z/x", f"l{i}", qos=1)
    remote.wait_log(r"New (client|bridge) connected .* as bridge-b1", timeout=30, start=m)
    want = [f"l{i}".encode() for i in range(8)]
    rsub.wait_for(lambda t, p: set(want) <= {q for _, q, _, _ in rsub.got}, timeout=20)
    return remote, local, rsub, want, m


def test_start_type_lazy_threshold(nodes, bridging):
    """start_type lazy: no connection until more than `threshold` messages are
    queued for the remote; then every queued message is delivered."""
    _, _, rsub, want, _ = lazy_bridge(nodes, bridging)
    got = [p for _, p, _, _ in rsub.data()]
    assert sorted(set(got)) == want
    if bridging == "hato":
        # mosquitto 2.0.11 delivers the queue out of order here (l5, l6, l0..l4, l7).
        assert got == want


def test_start_type_lazy_idle_timeout(nodes, bridging, request):
    """idle_timeout: a lazy bridge without traffic for that many seconds disconnects."""
    mosquitto_differs(request, bridging, "an idle lazy bridge stayed connected for 30 s "
                      "with idle_timeout 2")
    remote, _, _, _, m = lazy_bridge(nodes, bridging, idle_timeout=2)
    remote.wait_log(r"Client bridge-b1 (closed its connection|disconnected)", timeout=30, start=m)


# ---------------------------------------------------------------------------
# bridge_max_queued_messages (ours)


def metrics_sample(port, name, labels, timeout=15):
    """The value of one sample on a `protocol metrics` listener, polled until
    it is there (a deadline, not a sleep)."""
    want = f"{name}{{{labels}}} "
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            body = r.read().decode()
        for line in body.splitlines():
            if line.startswith(want):
                return int(float(line[len(want):]))
        time.sleep(0.1)
    raise AssertionError(f"no {want!r} in /metrics:\n{body}")


def sys_value(watch, topic, payload, timeout=15):
    """Wait for topic (a $SYS value, retained, sys_interval 1) to read payload."""
    payload = str(payload).encode()
    return watch.wait_for(lambda t, p: t == topic and p == payload, timeout=timeout)


DROPPED = "$SYS/broker/hato/publish/messages/dropped/"


@pytest.mark.parametrize("bridge_max,max_queued,kept", [
    (5, 2, 5),    # the broker's limit is lower: the bridge's own bound wins
    (5, 100, 5),  # the broker's limit is higher: the bridge's own bound wins
    (0, 3, 3),    # 0 = the broker's max_queued_messages (negative twin)
])
def test_bridge_max_queued_messages(nodes, tmp_path, bridge_max, max_queued, kept):
    """bridge_max_queued_messages N bounds hato's queue of the bridge's local
    session while the remote is away: of 8 QoS 1 messages published during
    the outage the first N arrive on the remote, in order, the rest are
    dropped, logged once and counted as reason bridge_queue_full ($SYS and
    metrics). An ordinary offline client in the same broker is held to
    max_queued_messages, so the two bounds are seen apart."""
    total = 8
    remote = persistent_remote(nodes, tmp_path)
    reader = remote_reader(remote)
    mport = free_port()
    conf = (f"max_queued_messages {max_queued}\nsys_interval 1\n"
            f"listener {mport} 127.0.0.1\nprotocol metrics\n"
            + bridge_block(remote, topics=["q/# out 1"],
                           extra=f"cleansession false\nbridge_max_queued_messages {bridge_max}\n"))
    local = nodes.start("hato", conf, name="local")
    state = Client(local)
    state.subscribe(STATE)
    state.wait_payload("1")
    up_out(local, remote, "q/probe", "q/#", rsub=reader)
    reader.close_settled()
    plain = Client(local, "plain", clean=False)
    plain.subscribe("q/x", qos=1)
    plain.close_settled()
    down(state, remote)
    state.clear()
    m = local.mark()
    pub = Client(local)
    want = [f"b{i:02}".encode() for i in range(total)]
    for p in want:
        pub.publish("q/x", p, qos=1)
    line = local.wait_log(r"Queue of bridge local\.bridge-b1 is full", start=m)
    assert f"({kept} messages" in line, line
    named = "bridge_max_queued_messages" if bridge_max else "max_queued_messages"
    assert f"({named}, max_queued_bytes)" in line, line
    assert count_lines(local, r"Queue of bridge local\.bridge-b1 is full", m) == 1, local.log
    watch = Client(local)
    watch.subscribe(DROPPED + "#", qos=0)
    sys_value(watch, DROPPED + "bridge_queue_full", total - kept)
    sys_value(watch, DROPPED + "queue_full", total - min(total, max_queued))
    assert metrics_sample(mport, "hato_publish_dropped_total",
                          'reason="bridge_queue_full"') == total - kept
    remote.restart()
    reader = Client(remote, "reader", clean=False)
    assert reader.connack.session_present
    state.wait_payload("1", timeout=20)  # the queue is sent: END is not queued behind it
    pub.publish("q/x", "END", qos=1)
    got = [p for _, p, _, _ in sentinel_wait(reader, timeout=30)]
    assert got == want[:kept], f"the first {kept} of {total}, in order: {got}"
    plain = Client(local, "plain", clean=False)
    pub.publish("q/x", "PLAIN-END", qos=1)
    plain.wait_payload("PLAIN-END")
    got = [p for _, p, _, _ in plain.data() if p in want]
    assert got == want[:min(total, max_queued)], f"max_queued_messages {max_queued}: {got}"


# ---------------------------------------------------------------------------
# The local session registered before the first remote attempt


def first_line(node, pattern):
    """Index of the first log line matching pattern, or None."""
    rx = re.compile(pattern)
    with node.cond:
        for i, l in enumerate(node.lines):
            if l is not None and rx.search(l):
                return i
    return None


@pytest.mark.parametrize("local_clean", ["false", "true"])
def test_local_session_registered_before_first_attempt(nodes, tmp_path, local_clean):
    """cleansession false, local_cleansession false (its default): hato makes
    the bridge's local session (with its out subscriptions) before the remote
    was ever reached, so QoS 1 messages published while the remote has not
    been up yet are queued and delivered, in order, once it is. With
    local_cleansession true there is no session until the first connection:
    the same sequence delivers none of them (negative twin).
    The remote's reader session is persistent and made before, so nothing
    depends on when the reader connects."""
    remote = persistent_remote(nodes, tmp_path)
    remote_reader(remote).close_settled()
    remote.stop(check=False)  # its port now free: the bridge's first attempts fail
    local = nodes.start("hato", bridge_block(
        remote, topics=["q/# out 1"],
        extra=f"cleansession false\nlocal_cleansession {local_clean}\n"), name="local")
    local.wait_log(r"Bridge b1: connecting to 127\.0\.0\.1:\d+ failed", timeout=20)
    reg = first_line(local, r"New client connected from bridge:b1 as local\.bridge-b1 ")
    attempt = first_line(local, r"Connecting bridge b1 ")
    if local_clean == "false":
        assert reg is not None and reg < attempt, f"session not registered first:\n{local.log}"
    else:
        assert reg is None, f"local side connected without a remote:\n{local.log}"
    pub = Client(local)
    want = [f"e{i:02}".encode() for i in range(10)]
    for p in want:
        pub.publish("q/x", p, qos=1)
    state = Client(local)
    state.subscribe(STATE)
    remote.restart()
    state.wait_payload("1", timeout=30)
    reader = Client(remote, "reader", clean=False)
    assert reader.connack.session_present
    await_flow(local, reader, "q/probe")  # the local subscription is there (twin: now)
    pub.publish("q/x", "END", qos=1)
    got = sentinel_wait(reader, timeout=30)
    if local_clean == "false":
        check_delivered(got, want, 1)
    else:
        assert got == [], got


# ---------------------------------------------------------------------------
# local_username / local_password against hato's password_file


def hato_passwd_file(path, users):
    """A password file made by hato-passwd (next to HATO_BIN); users: {name: password}."""
    tool = os.path.join(os.path.dirname(HATO_BIN), "hato-passwd")
    first = True
    for u, pw in users.items():
        args = [tool] + (["-c"] if first else []) + ["-b", str(path), u, pw]
        r = subprocess.run(args, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        first = False
    return str(path)


LOCAL_USERS = {"bridgeuser": "right-pw", "reader": "reader-pw"}


def password_local(nodes, tmp_path, extra):
    """A mosquitto remote and a hato bridging broker with a password file and
    allow_anonymous false; the bridge carries out/# out and in/# in."""
    pw = hato_passwd_file(tmp_path / "passwd", LOCAL_USERS)
    remote = nodes.start("mosquitto", name="remote")
    local = nodes.start("hato", f"password_file {pw}\n" + bridge_block(
        remote, topics=["out/# out 1", "in/# in 1"], extra=extra), name="local",
        anonymous=False)
    return remote, local


def local_client(local, client_id):
    return Client(local, client_id, username="reader", password="reader-pw")


def flows_both_ways(local, remote):
    rsub = Client(remote)
    rsub.subscribe("out/#", qos=1)
    lpub = local_client(local, "lpub")
    deadline = time.monotonic() + 20
    n = 0
    while not rsub.got:  # local -> remote (the kit's await_flow publishes anonymously)
        assert time.monotonic() < deadline, f"nothing local -> remote:\n{local.log}"
        n += 1
        lpub.publish("out/probe", f"probe-{n}", qos=0)
        rsub.poll(0.2)
    lsub = local_client(local, "lsub")
    lsub.subscribe("in/#", qos=1)
    await_flow(remote, lsub, "in/probe")
    rsub.clear()
    lsub.clear()
    lpub.publish("out/x", "END", qos=1)
    Client(remote).publish("in/x", "END", qos=1)
    assert sentinel_wait(rsub) == [] and sentinel_wait(lsub) == []


def test_local_password_right(nodes, tmp_path):
    """local_username and local_password: the bridge's local side logs in to
    hato like any client, checked against password_file; right password, the
    bridge works both ways."""
    remote, local = password_local(nodes, tmp_path,
                                   "local_username bridgeuser\nlocal_password right-pw\n")
    flows_both_ways(local, remote)
    assert "refused" not in local.log, local.log


@pytest.mark.parametrize("local_clean", ["false", "true"])
def test_local_password_wrong(nodes, tmp_path, local_clean):
    """A wrong local_password: hato refuses the local login (the refusal
    names the bridge as the peer) and the bridge logs why; nothing flows
    either way. local_cleansession false fails at the registration before any
    remote attempt; true fails after the remote CONNACK."""
    remote, local = password_local(nodes, tmp_path,
                                   "local_username bridgeuser\nlocal_password wrong-pw\n"
                                   f"local_cleansession {local_clean}\n")
    line = local.wait_log(r"Client local\.bridge-b1 \[bridge:b1\] refused: bad user name or "
                          r"password \(user 'bridgeuser'\)", timeout=20)
    local.wait_log(r"Bridge b1: .*the local connection was refused: .*", timeout=20)
    rsub = Client(remote)
    rsub.subscribe("out/#", qos=1)
    lsub = local_client(local, "lsub")
    lsub.subscribe("in/#", qos=1)
    lpub, rpub = local_client(local, "lpub"), Client(remote)
    m = local.mark()
    for i in range(3):
        lpub.publish("out/x", f"o{i}", qos=1)
        rpub.publish("in/x", f"i{i}", qos=1)
    # Two more refused attempts (restart_timeout 1) after the messages: time
    # enough for a working bridge to carry them.
    for _ in range(2):
        local.wait_log(r"Client local\.bridge-b1 \[bridge:b1\] refused", timeout=20, start=m)
        m = local.mark()
    rsub.poll(0.5)
    lsub.poll(0.1)
    assert rsub.got == [] and lsub.got == [], (line, rsub.got, lsub.got)
    if local_clean == "false":
        assert "bridge-b1" not in remote.log, "the remote was tried before the local login"


def test_local_username_without_password_trusted(nodes, tmp_path):
    """local_username without local_password: the local side is trusted as
    before (no password check), even with allow_anonymous false and a user
    name the password file does not have; an ordinary client with that name
    and no password is refused (the file is enforced)."""
    remote, local = password_local(nodes, tmp_path, "local_username ghost\n")
    flows_both_ways(local, remote)
    c = RawClient(local, timeout=10)
    ack_ = c.connect("ghost-client", username="ghost")
    c.close()
    assert ack_.reason != 0, ack_


# ---------------------------------------------------------------------------
# MQTT 5 PUBLISH properties across a bridge_protocol_version mqttv50 bridge


class Paho5:
    """A paho-mqtt MQTT 5 client on its own network thread; messages in a queue."""

    def __init__(self, node, client_id):
        self.q = queue.Queue()
        connected = queue.Queue()
        self.c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
        self.c.on_connect = lambda c, u, flags, rc, props=None: connected.put(rc)
        self.c.on_message = lambda c, u, msg: self.q.put(msg)
        self.c.connect(node.host, node.port, keepalive=30, clean_start=True)
        self.c.loop_start()
        rc = connected.get(timeout=10)
        assert rc == 0, f"CONNACK {rc}"

    def subscribe(self, topic, qos=1):
        done = queue.Queue()
        self.c.on_subscribe = lambda c, u, mid, rcs, props: done.put(rcs)
        self.c.subscribe(topic, options=SubscribeOptions(qos=qos))
        rcs = done.get(timeout=10)
        assert all(rc.value < 0x80 for rc in rcs), rcs

    def publish(self, topic, payload, qos=1, properties=None):
        info = self.c.publish(topic, payload, qos=qos, properties=properties)
        info.wait_for_publish(10)
        assert info.is_published()

    def wait_payload(self, payload, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no message {payload!r} in {timeout}s"
            try:
                msg = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if msg.payload == payload:
                return msg

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


PROPS = {
    "UserProperty": [("site", "plant-1"), ("k", "v1"), ("k", "v2")],
    "ContentType": "application/json",
    "ResponseTopic": "reply/here",
    "CorrelationData": b"\x00corr-\xff",
    "PayloadFormatIndicator": 1,
    "MessageExpiryInterval": 3600,
}


@pytest.mark.parametrize("direction", ["out", "in"])
def test_mqttv50_publish_properties_forwarded(nodes, bridging, request, direction):
    """bridge_protocol_version mqttv50: a PUBLISH's user properties (order and
    repeats kept, MQTT-3.3.2-18), content type, response topic, correlation
    data and payload format indicator arrive unchanged on the other side, the
    message expiry interval as at most what was sent (MQTT-3.3.2-6), both
    ways. Publisher and subscriber are paho-mqtt MQTT 5 clients."""
    remote = nodes.start("mosquitto", name="remote")
    local = nodes.start(bridging, bridge_block(
        remote, topics=["p/# out 1", "r/# in 1"],
        extra="bridge_protocol_version mqttv50\n"), name="local")
    src, dst, topic = (local, remote, "p/x") if direction == "out" else (remote, local, "r/x")
    sub = Paho5(dst, "props-sub")
    pub = Paho5(src, "props-pub")
    try:
        sub.subscribe(topic.split("/")[0] + "/#")
        # The bridge is up once a probe crosses (a poll with a deadline).
        deadline = time.monotonic() + 20
        n = 0
        while True:
            n += 1
            pub.publish(topic, f"probe-{n}".encode(), qos=0)
            try:
                sub.wait_payload(f"probe-{n}".encode(), timeout=0.3)
                break
            except AssertionError:
                assert time.monotonic() < deadline, f"no probe crossed:\n{local.log[-3000:]}"
        p = Properties(PacketTypes.PUBLISH)
        for k, v in PROPS.items():
            setattr(p, k, v)
        pub.publish(topic, b'{"t": 21.5}', qos=1, properties=p)
        msg = sub.wait_payload(b'{"t": 21.5}')
        got = msg.properties
        missing = [k for k in PROPS if not hasattr(got, k)]
        assert not missing, f"properties lost: {missing}; got {got}"
        assert got.UserProperty == PROPS["UserProperty"]
        assert got.ContentType == PROPS["ContentType"]
        assert got.ResponseTopic == PROPS["ResponseTopic"]
        assert got.CorrelationData == PROPS["CorrelationData"]
        assert got.PayloadFormatIndicator == 1
        assert 0 < got.MessageExpiryInterval <= PROPS["MessageExpiryInterval"]
    finally:
        pub.close()
        sub.close()
