"""hato as the REMOTE end of a Mosquitto bridge.

A Mosquitto bridge with `try_private true` (the default) sends its CONNECT
with the protocol level's high bit set: 0x83 ("MQIsdp", 3.1) or 0x84
("MQTT", 3.1.1). Mosquitto 2.0 accepts those as 3.1 / 3.1.1, marks the
client as a bridge, and gives every 3.x SUBSCRIBE of a bridge the options
no-local and retain-as-published (handle_subscribe.c): its own messages are
never sent back to it (no loop), and the retain flag goes through as
published so retained messages propagate. hato does the same (see
docs/internals/bridge-peer.md). Each behaviour is checked against hato and
against Debian's mosquitto 2.0.11 started here, with the same script.
"""

import re
import struct
import time

import pytest

import mqttraw as m
from authutil import Mosquitto
from conftest import REFERENCE

pytestmark = pytest.mark.skipif(REFERENCE != "hato", reason="compares hato with mosquitto itself")


@pytest.fixture
def mosquitto(tmp_path):
    started = []

    def start(config="allow_anonymous true\n"):
        b = Mosquitto(tmp_path, config)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


def connect_outcome(port, name, level, v5_body=False):
    """CONNACK return code for a CONNECT with this protocol name/level, or
    'closed' when the broker closes without one."""
    c = m.RawClient(port)
    try:
        body = m.s(name) + bytes([level, 0x02]) + struct.pack("!H", 60)
        if v5_body:
            body += b"\x00"  # no properties
        c.send(m.packet(m.CONNECT, 0, body + m.s("lvl")))
        try:
            p = c.recv()
        except ConnectionError:
            return "closed"
        assert p.type == m.CONNACK, p
        return p.reason
    finally:
        c.close()


LEVELS = [
    (b"MQTT", 0x84, False),    # 3.1.1 bridge (try_private)
    (b"MQIsdp", 0x83, False),  # 3.1 bridge
    (b"MQTT", 0x82, False),
    (b"MQTT", 0x83, False),    # 3.1's level under 3.1.1's name
    (b"MQIsdp", 0x84, False),
    (b"MQTT", 0xC4, False),
    (b"MQTT", 0x04, False),
    (b"MQIsdp", 0x03, False),
]


def test_connect_level_high_bit_accepted_as_mosquitto_does_try_private(broker, mosquitto):
    mosq = mosquitto()
    got_hato = [connect_outcome(broker.port, n, lv, v5) for n, lv, v5 in LEVELS]
    got_mosq = [connect_outcome(mosq.port, n, lv, v5) for n, lv, v5 in LEVELS]
    assert got_hato == got_mosq, list(zip(LEVELS, got_hato, got_mosq))
    # 0x84, 0x83 accepted; 0x82, 0x83 as "MQTT", 0x84 as "MQIsdp", 0xC4:
    # "unacceptable protocol version" (MQTT-3.1.2-2).
    assert got_hato == [0, 0, 1, 1, 1, 1, 0, 0]
    broker.wait_log(r"New bridge connected from \S+ as lvl \(p2, c1, k60\)")
    broker.wait_log(r"New bridge connected from \S+ as lvl \(p1, c1, k60\)")


def test_connect_level_0x85_refused_unlike_mosquittos_half_v5(broker, mosquitto):
    """"MQTT" 0x85: hato answers "unacceptable protocol version". Mosquitto
    2.0.11 replies in 5.0 form but reads that CONNECT without properties,
    so a well-formed 5.0 CONNECT with level 0x85 is closed as a protocol
    error there: no client can rely on it (docs/internals/bridge-peer.md)."""
    mosq = mosquitto()
    assert connect_outcome(mosq.port, b"MQTT", 0x85, v5_body=True) == "closed"
    assert connect_outcome(broker.port, b"MQTT", 0x85, v5_body=True) == 1
    assert connect_outcome(broker.port, b"MQTT", 0x85, v5_body=False) == 1


def bridge_peer_script(port, name, level):
    """A raw bridge peer and a plain client on one broker; what each saw."""
    peer = m.RawClient(port)
    peer.send(m.connect_raw("peer", name=name, level=level, flags=0x02))
    assert peer.expect(m.CONNACK).reason == 0
    plain = m.connected_client(port, "plain")
    m.subscribe_ok(peer, 1, [("rb/#", 1)])
    m.subscribe_ok(plain, 1, [("rb/#", 1)])
    # The peer's own message reaches the plain client, not the peer.
    m.publish_ok(peer, "rb/a", b"from-peer", qos=1, pid=5)
    got = m.recv_publish(plain)
    seen = {"plain": [(got.topic, got.payload, got.retain)]}
    # A retained message from the plain client: the peer gets the retain
    # flag as published, the plain 3.1.1 client does not (MQTT-3.3.1-9),
    # and gets its own message (no-local is for bridges only).
    got = publish_seen(plain, "rb/b", b"from-plain", 6, retain=True)
    seen["plain"].append((got.topic, got.payload, got.retain))
    got = m.recv_publish(peer)  # first thing the peer gets: no echo of rb/a before it
    seen["peer"] = [(got.topic, got.payload, got.retain)]
    peer.close()
    plain.close()
    return seen


@pytest.mark.parametrize("name,level", [(b"MQTT", 0x84), (b"MQIsdp", 0x83)])
def test_bridge_peer_no_local_and_retain_as_published_as_mosquitto(broker, mosquitto, name, level):
    mosq = mosquitto()
    want = {"plain": [("rb/a", b"from-peer", False), ("rb/b", b"from-plain", False)],
            "peer": [("rb/b", b"from-plain", True)]}
    assert bridge_peer_script(mosq.port, name, level) == want
    assert bridge_peer_script(broker.port, name, level) == want


def test_plain_client_level_4_gets_own_messages_and_no_retain(broker):
    """The control: without the bridge bit nothing changes (MQTT-3.3.1-9)."""
    c = m.connected_client(broker, "ctl")
    m.subscribe_ok(c, 1, [("rb/#", 1)])
    got = publish_seen(c, "rb/x", b"own", 2, retain=True)
    assert (got.payload, got.retain) == (b"own", False)
    c.close()


def publish_seen(client, topic, payload, pid, retain=False):
    """QoS 1 publish from a client subscribed to it: PUBACK and its own copy
    may come in either order. Returns the copy."""
    client.send(m.publish(topic, payload, qos=1, retain=retain, pid=pid))
    ack = copy = None
    while ack is None or copy is None:
        p = client.recv()
        if p.type == m.PUBACK:
            ack = p
        elif p.type == m.PUBLISH:
            client.send(m.ack(m.PUBACK, p.pid))
            copy = p
    assert ack.pid == pid
    return copy


class Collector:
    """A raw subscriber; messages by topic in arrival order."""

    def __init__(self, port, cid, filt="br/#"):
        self.c = m.connected_client(port, cid)
        m.subscribe_ok(self.c, 1, [(filt, 1)])
        self.got = []

    def until(self, topic, payload, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"{payload!r} on {topic} never arrived; got {self.got}"
            p = m.recv_publish(self.c, timeout=left)
            self.got.append((p.topic, p.payload, p.retain))
            if (p.topic, p.payload) == (topic, payload):
                return

    def count(self, topic, payload):
        return sum(1 for t, pl, _ in self.got if (t, pl) == (topic, payload))


def bridged_flow(remote, local):
    """Messages both ways over a bridge `local` -> `remote`; copies seen."""
    rsub = Collector(remote.port, "rsub")
    lsub = Collector(local.port, "lsub")
    rpub = m.connected_client(remote.port, "rpub")
    lpub = m.connected_client(local.port, "lpub")
    # Wait until the bridge's subscription on the remote is in place: publish
    # numbered probes there until one comes through (bounded).
    for i in range(100):
        m.publish_ok(rpub, "br/sync", b"%d" % i, qos=0)
        try:
            p = m.recv_publish(lsub.c, timeout=0.1)
        except TimeoutError:
            continue
        if p.topic == "br/sync":
            break
    else:
        raise AssertionError("the bridge never delivered from the remote side")
    rsub.until("br/sync", b"%d" % i)
    lsub.got.clear()
    rsub.got.clear()
    # Remote -> local, then local -> remote; each awaited on both sides.
    m.publish_ok(rpub, "br/r2l", b"A", qos=1, pid=1)
    lsub.until("br/r2l", b"A")
    rsub.until("br/r2l", b"A")
    m.publish_ok(lpub, "br/l2r", b"B", qos=1, pid=2)
    rsub.until("br/l2r", b"B")
    lsub.until("br/l2r", b"B")
    # Sentinels: anything echoed back would be on the bridge's connection
    # ahead of them.
    m.publish_ok(rpub, "br/end", b"S", qos=1, pid=3)
    lsub.until("br/end", b"S")
    m.publish_ok(lpub, "br/end", b"T", qos=1, pid=4)
    rsub.until("br/end", b"T")
    # Retained messages each way: stored on the far side only when the
    # bridge carried the retain flag (retain-as-published on the remote).
    m.publish_ok(lpub, "br/ret", b"R", qos=1, pid=5, retain=True)
    rsub.until("br/ret", b"R")
    m.publish_ok(rpub, "br/ret2", b"Q", qos=1, pid=6, retain=True)
    lsub.until("br/ret2", b"Q")
    out = {
        "local A": lsub.count("br/r2l", b"A"), "local B": lsub.count("br/l2r", b"B"),
        "remote A": rsub.count("br/r2l", b"A"), "remote B": rsub.count("br/l2r", b"B"),
        "retained on remote": retained(remote.port, "br/ret"),
        "retained on local": retained(local.port, "br/ret2"),
    }
    for c in (rsub.c, lsub.c, rpub, lpub):
        c.close()
    return out


def retained(port, topic):
    """The retained message a new subscriber to `topic` gets, or None. The
    empty retained message published after the probe proves none came."""
    c = m.connected_client(port, "late")
    m.subscribe_ok(c, 1, [(topic, 1), ("br/none", 0)])
    try:
        p = m.recv_publish(c, timeout=1.0)
        return (p.payload, p.retain)
    except TimeoutError:
        return None
    finally:
        c.close()


def bridge_config(remote_port, try_private):
    return ("allow_anonymous true\n"
            "connection to-remote\n"
            f"address 127.0.0.1:{remote_port}\n"
            "topic br/# both 1\n"
            f"try_private {'true' if try_private else 'false'}\n"
            "cleansession true\n"
            "remote_clientid mbridge\n"
            "bridge_protocol_version mqttv311\n")


@pytest.mark.parametrize("try_private", [True, False])
def test_mosquitto_bridge_into_hato_exactly_once_no_echo(broker, mosquitto, try_private):
    # Reference: the same bridge into a second mosquitto.
    ref_remote = mosquitto()
    ref_local = mosquitto(bridge_config(ref_remote.port, try_private))
    want = bridged_flow(ref_remote, ref_local)
    local = mosquitto(bridge_config(broker.port, try_private))
    kind = "bridge" if try_private else "client"
    broker.wait_log(rf"New {kind} connected from \S+ as mbridge \(p2, c1")
    got = bridged_flow(broker, local)
    assert got == want, f"hato {got} != mosquitto {want}"
    if try_private:
        # Exactly once each way, no echo, retain flag as published.
        assert got == {"local A": 1, "local B": 1, "remote A": 1, "remote B": 1,
                       "retained on remote": (b"R", True), "retained on local": (b"Q", True)}
    else:
        # A plain 3.1.1 client to the remote: its own message comes back
        # once (the local side's no-local stops it there, no loop), and the
        # retain flag is cleared on the way back (MQTT-3.3.1-9), exactly as
        # Mosquitto-to-Mosquitto without try_private.
        assert got == {"local A": 1, "local B": 2, "remote A": 1, "remote B": 1,
                       "retained on remote": (b"R", True), "retained on local": None}
