"""Directives that were only stored before issue 14, each now in force:
global_max_connections, global_max_clients (Mosquitto 2.1), memory_limit,
max_inflight_bytes, check_retain_source, retain_expiry_interval (2.1),
allow_duplicate_messages (documented difference), enable_control_api (2.1,
refused when true).

Tests without a hato_only mark run against Debian's mosquitto 2.0.11 too
(HATO_TEST_BROKER=mosquitto): their expectations are Mosquitto's."""

import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import HATO_BIN, REFERENCE, RUN_AS, free_port
from mqttraw import (CONNACK, PUBACK, PUBLISH, PUBREC, SUBACK, RawClient, ack, closed_by_broker,
                     connected_client, drain, publish, publish_ok, recv_publish, sub_opts,
                     subscribe, subscribe_ok, v5_client)
from test_sys import wait_value

HATO = pytest.mark.hato_only


def connect_until(b, cid, ok, tries=100, **kw):
    """CONNECT (fresh sockets) until ok(connack or None) holds; bounded in count and time.
    A session ended by a DISCONNECT is freed a moment later, on the broker's side."""
    deadline = time.monotonic() + 10
    last = None
    for _ in range(tries):
        c = RawClient(b, version=kw.get("version", 4))
        try:
            last = c.connect(cid, **kw)
        except (ConnectionError, TimeoutError, OSError):
            last = None
        if ok(last):
            return c, last
        c.close()
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise AssertionError(f"never got the expected CONNACK; last {last!r}")


def accepted_and_served(port):
    """A socket that gets a CONNACK (not closed at accept)."""
    c = RawClient(port)
    ack_ = c.connect("probe")
    return c, ack_


# ---- global_max_connections --------------------------------------------------------

@HATO("global_max_connections is Mosquitto 2.1")
def test_global_max_connections_counts_every_listener(broker_factory):
    """Sockets on all listeners count: with 2, one on each listener fills the
    broker, a third on either is closed at once without a byte (as Mosquitto
    2.1's accept path); closing one makes room again."""
    p2 = free_port()
    b = broker_factory(f"threads 4\nglobal_max_connections 2\nlistener {p2} 127.0.0.1\n")
    a = connected_client(b.port, "a")
    c = connected_client(p2, "c")
    for port in (b.port, p2):
        x = RawClient(port)
        x.send(b"\x10")  # whatever it sends, nothing comes back
        assert closed_by_broker(x) == []
    b.wait_log(r"Refused connection from 127\.0\.0\.1:\d+: global_max_connections \(2\) reached")
    a.close()
    again, ack_ = connect_until(b, "again", lambda k: k is not None and k.reason == 0)
    again.close()
    c.close()


# ---- global_max_clients ------------------------------------------------------------

@HATO("global_max_clients is Mosquitto 2.1")
def test_global_max_clients_counts_offline_sessions(broker_factory):
    """Sessions count, connected or not (an offline persistent one too, as
    Mosquitto 2.1 counts every client id it holds). Beyond the cap a CONNECT
    that would create a session is refused: MQTT 5 CONNACK 0x89 Server busy,
    MQTT 3 closed without CONNACK (Mosquitto 2.1's handle_connect).
    Reconnecting to an existing session is not a new client."""
    b = broker_factory("threads 4\nglobal_max_clients 2\n")
    off = connected_client(b, "persist", clean=False)
    off.close()  # offline, its session kept
    on = connected_client(b, "online")
    v5, ack5 = v5_client(b, "third")
    assert ack5.reason == 0x89
    closed_by_broker(v5)
    v3 = RawClient(b)
    v3.send(__import__("mqttraw").connect("fourth"))
    assert closed_by_broker(v3) == []  # no CONNACK
    b.wait_log(r"Client fourth \[127\.0\.0\.1:\d+\] refused: global_max_clients \(2\) reached")
    # The offline session's owner may come back: no new session.
    back, ackb = connect_until(b, "persist", lambda k: k is not None and k.reason == 0,
                               clean=False)
    assert ackb.session_present
    back.close()
    # A clean session ends with its connection: room for one more.
    on.close()
    later, _ = connect_until(b, "later", lambda k: k is not None and k.reason == 0)
    later.close()


@HATO("global_max_clients is Mosquitto 2.1")
def test_global_max_clients_exact_under_parallel_connects(broker_factory):
    """Across 4 workers, 40 simultaneous CONNECTs with a cap of 10: exactly 10
    are accepted (the count is one atomic, reserved by compare-and-swap)."""
    b = broker_factory("threads 4\nglobal_max_clients 10\n")
    socks = []
    for i in range(40):
        s = RawClient(b)
        socks.append(s)
    for i, s in enumerate(socks):
        s.send(__import__("mqttraw").connect(f"p{i}", clean=False))
    accepted = 0
    for s in socks:
        try:
            k = s.expect(CONNACK)
            accepted += k.reason == 0
        except (ConnectionError, TimeoutError):
            pass
    assert accepted == 10
    for s in socks:
        s.close()


# ---- memory_limit ------------------------------------------------------------------

@HATO("Mosquitto counts all its allocations (its baseline alone varies), and closes the "
      "connection where an allocation fails: the figures are not comparable")
def test_memory_limit_refuses_publish_and_counts(broker_factory):
    """memory_limit counts the payload bytes of the messages hato holds (here a
    retained one). A PUBLISH that would pass it: MQTT 5 PUBACK/PUBREC 0x97
    Quota exceeded; MQTT 3 QoS 0 dropped, QoS 1/2 closed without an
    acknowledgement (the client keeps the message). Counted in
    dropped/memory_limit. Room again once the retained message is cleared."""
    # $SYS values are messages too (a few KiB here): the figures leave room for them.
    b = broker_factory("memory_limit 100000\nsys_interval 1\n")
    sub = connected_client(b, "sub")
    subscribe_ok(sub, 1, [("m/#", 0)])
    pub = connected_client(b, "pub")
    held, big, small = b"h" * 60000, b"x" * 50000, b"s" * 1000
    publish_ok(pub, "m/held", held, qos=1, retain=True)  # 60000 of 100000 held
    assert recv_publish(sub).payload == held
    v5, _ = v5_client(b, "v5")
    v5.send(publish("m/x", big, qos=1, pid=7, version=5))
    a = v5.expect(PUBACK)
    assert (a.pid, a.reason) == (7, 0x97)
    v5.send(publish("m/x", big, qos=2, pid=8, version=5))
    a = v5.expect(PUBREC)
    assert (a.pid, a.reason) == (8, 0x97)
    pub.send(publish("m/x", big))               # MQTT 3 QoS 0: dropped
    publish_ok(pub, "m/small", small)           # fits
    assert recv_publish(sub).payload == small   # and nothing of the big one before it
    v3 = connected_client(b, "v3")
    v3.send(publish("m/x", big, qos=1, pid=3))
    assert closed_by_broker(v3) == []           # no PUBACK: the client sends it again later
    b.wait_log(r"memory_limit \(100000 bytes\) reached")
    wait_value(b.port, "$SYS/broker/hato/publish/messages/dropped/memory_limit",
               lambda v: int(v) == 4)
    publish_ok(pub, "m/held", b"", qos=1, retain=True)  # clears the retained message
    assert recv_publish(sub).payload == b""
    v5.send(publish("m/x", big, qos=1, pid=9, version=5))
    a = v5.expect(PUBACK)
    assert (a.pid, a.reason) == (9, 0)
    assert recv_publish(sub).payload == big
    for c in (sub, pub, v5):
        c.close()


# ---- max_inflight_bytes ------------------------------------------------------------

def inflight_run(broker_factory, conf, n, size):
    b = broker_factory(conf)
    sub = connected_client(b, "sub")
    subscribe_ok(sub, 1, [("f", 1)])
    pub = connected_client(b, "pub")
    for i in range(n):
        publish_ok(pub, "f", bytes([65 + i]) * size, qos=1, pid=i + 1)
    first = [p for p in drain(sub) if p.type == PUBLISH]
    return b, sub, pub, first


@HATO("Mosquitto 2.0.11's byte window does not hold: measured, 12 messages of 40 bytes "
      "with max_inflight_bytes 100 are sent 11 at once (docs/migration.md)")
def test_max_inflight_bytes_window(broker_factory):
    """Bytes of QoS 1/2 payload in flight to one client: a message goes while
    the bytes in flight are below the limit (the one that crosses it still
    goes), the others queue; each acknowledgement lets the next through.
    Same figures as Mosquitto 2.0 (db__ready_for_flight)."""
    _, sub, pub, first = inflight_run(broker_factory, "max_inflight_bytes 100\n", 5, 40)
    assert [p.payload[:1] for p in first] == [b"A", b"B", b"C"]  # 0, 40, 80 < 100
    sub.send(ack(PUBACK, first[0].pid))
    more = [p for p in drain(sub) if p.type == PUBLISH]
    assert [p.payload[:1] for p in more] == [b"D"]               # 80 < 100 again
    for p in first[1:] + more:
        sub.send(ack(PUBACK, p.pid))
    rest = [p for p in drain(sub) if p.type == PUBLISH]
    assert [p.payload[:1] for p in rest] == [b"E"]
    sub.close()
    pub.close()


def test_max_inflight_messages_stricter_than_bytes(broker_factory):
    """With both limits, the stricter wins: 2 messages although the bytes allow 10."""
    _, sub, pub, first = inflight_run(
        broker_factory, "max_inflight_bytes 1000\nmax_inflight_messages 2\n", 4, 10)
    assert len(first) == 2
    sub.close()
    pub.close()


# ---- check_retain_source -----------------------------------------------------------

def reload(b):
    mark = b.mark()
    b.signal(signal.SIGHUP)
    b.wait_log(r"Reloaded password and ACL files\.|Reloading config\.", start=mark)


def retained_for(b, who):
    c = connected_client(b, who, username=who)
    subscribe_ok(c, 1, [("r/#", 0)])
    got = [p.payload for p in drain(c) if p.type == PUBLISH]
    c.close()
    return got


@pytest.mark.parametrize("check", [True, False])
def test_check_retain_source(broker_factory, tmp_path, check):
    """A retained message is re-checked against its publisher's ACL of now
    before a new subscriber gets it: once alice may no longer write r/x, her
    retained message is not delivered (and, as in Mosquitto, kept: access
    back, delivered again). Without check_retain_source it is delivered."""
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite r/#\nuser bob\ntopic read r/#\n")
    b = broker_factory(f"acl_file {acl}\ncheck_retain_source {'true' if check else 'false'}\n")
    alice = connected_client(b, "alice", username="alice")
    publish_ok(alice, "r/x", b"from alice", qos=1, retain=True)
    alice.close()
    assert retained_for(b, "bob") == [b"from alice"]
    acl.write_text("user alice\ntopic read r/#\nuser bob\ntopic read r/#\n")
    reload(b)
    assert retained_for(b, "bob") == ([] if check else [b"from alice"])
    acl.write_text("user alice\ntopic readwrite r/#\nuser bob\ntopic read r/#\n")
    reload(b)
    assert retained_for(b, "bob") == [b"from alice"]


def test_check_retain_source_survives_restart(broker_factory, tmp_path):
    """The publisher's identity is stored with the retained message: after a
    restart with an ACL that no longer lets alice write, it is not delivered."""
    store = tmp_path / "store"
    store.mkdir()
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite r/#\nuser bob\ntopic read r/#\n")
    conf = (f"acl_file {acl}\ncheck_retain_source true\npersistence true\n"
            f"persistence_location {store}/\n")
    b = broker_factory(conf)
    alice = connected_client(b, "alice", username="alice")
    publish_ok(alice, "r/x", b"kept", qos=1, retain=True)
    alice.close()
    b.stop()
    acl.write_text("user alice\ntopic read r/#\nuser bob\ntopic read r/#\n")
    b2 = broker_factory(conf, port=b.port)
    assert retained_for(b2, "bob") == []
    b2.stop()
    acl.write_text("user alice\ntopic readwrite r/#\nuser bob\ntopic read r/#\n")
    b3 = broker_factory(conf, port=b.port)
    assert retained_for(b3, "bob") == [b"kept"]


# ---- retain_expiry_interval --------------------------------------------------------

@HATO("retain_expiry_interval is Mosquitto 2.0.21/2.1; Debian's 2.0.11 refuses it")
def test_expired_retained_removed_without_being_read(broker_factory):
    """Mosquitto's meaning: expired retained messages (Message Expiry
    Interval) are swept from memory even if nobody subscribes. hato removes
    them when they expire, whatever the interval: the retained count drops."""
    b = broker_factory("retain_expiry_interval 1\nsys_interval 1\n")
    v5, _ = v5_client(b, "pub")
    topic = "$SYS/broker/retained messages/count"  # $SYS values are retained too
    before = int(wait_value(b.port, topic, lambda v: int(v) > 0))
    v5.send(publish("e/1", b"soon gone", qos=1, retain=True, version=5,
                    properties=[("message_expiry", 3)]))
    v5.expect(PUBACK)
    wait_value(b.port, topic, lambda v: int(v) == before + 1)
    wait_value(b.port, topic, lambda v: int(v) == before, timeout=12)
    v5.close()


# ---- allow_duplicate_messages ------------------------------------------------------

@pytest.mark.parametrize("dup", ["true", "false"])
def test_overlapping_subscriptions_copies(broker_factory, dup):
    """Documented difference (docs/migration.md): with allow_duplicate_messages
    true (the default) Mosquitto 2.0 sends one copy per matching subscription;
    with false, one copy at the highest QoS. hato always sends the one copy
    (MQTT 3.1.1 3.3.5 allows both), and warns at a line that says true."""
    b = broker_factory(f"allow_duplicate_messages {dup}\n")
    sub = connected_client(b, "sub")
    subscribe_ok(sub, 1, [("a/#", 0), ("a/b", 1)])
    pub = connected_client(b, "pub")
    publish_ok(pub, "a/b", b"x", qos=1)
    got = [p for p in drain(sub) if p.type == PUBLISH]
    if REFERENCE == "mosquitto" and dup == "true":
        assert sorted(p.qos for p in got) == [0, 1]
    else:
        assert [p.qos for p in got] == [1]
    if REFERENCE == "hato" and dup == "true":
        b.wait_log(r"allow_duplicate_messages true: hato sends one copy per client")
    sub.close()
    pub.close()


# ---- enable_control_api ------------------------------------------------------------

@HATO("runs the hato binary directly")
def test_enable_control_api_true_refused(tmp_path):
    conf = tmp_path / "c.conf"
    conf.write_text(f"{RUN_AS}listener {free_port()} 127.0.0.1\nenable_control_api true\n")
    r = subprocess.run([HATO_BIN, "-c", str(conf)], capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    line = 3 if RUN_AS else 2
    assert (f"{conf}:{line}: enable_control_api: hato has no $CONTROL/broker/v1 API "
            "(Mosquitto 2.1); remove the line or set it to false") in r.stderr


@HATO("Debian's mosquitto 2.0.11 does not know enable_control_api")
def test_enable_control_api_false_accepted(broker_factory):
    b = broker_factory("enable_control_api false\n")
    connected_client(b, "x").close()
