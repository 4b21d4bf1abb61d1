"""Hostile clients against the broker's limits (issue 7): a slow consumer,
very deep topics, thousands of subscriptions, topic aliases, packet ids,
oversized packets. A client that abuses a limit only ever spends its own
budget: it is refused or disconnected, memory stays bounded, and the other
clients keep receiving. docs/limits.md lists every limit.
"""

import os
import select
import struct
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hostile import ASAN_SMALL_QUARANTINE, rss_kib, small_rcvbuf_socket, stats  # noqa: E402
from mqttraw import (CONNACK, DISCONNECT, PUBACK, PUBCOMP, PUBLISH, PUBREC,  # noqa: E402
                     PUBREL, SUBACK, RawClient, ack, closed_by_broker, connect,
                     connected_client, drain, packet, publish, subscribe, unsubscribe,
                     v5_client, v5_subscriber)

pytestmark = pytest.mark.hato_only("hato limits, log lines and reason codes")


def raw_on(sock, version=4):
    c = RawClient.__new__(RawClient)
    c.version, c.timeout, c.sock, c.buf = version, 5.0, sock, bytearray()
    return c


# ---- slow consumer ---------------------------------------------------------

SLOW_CFG = ("max_output_buffer 262144\nmax_queued_messages 50\nmax_inflight_messages 10\n")
MSG = 4096
BATCH = 16
ROUNDS = 400  # 6400 messages, 25 MiB through the broker


def test_slow_consumer_memory_bounded_others_unaffected(broker_factory):
    """Two subscribers stop reading (QoS 0 and QoS 1) while a publisher floods
    25 MiB at their topic. The broker's RSS grows by far less than the flood
    (bounded by max_output_buffer per connection and max_queued_messages per
    session); QoS 0 to the slow one is dropped and counted, QoS 1 is held
    within max_inflight_messages + max_queued_messages; a third subscriber
    that reads receives every message, in order."""
    b = broker_factory(SLOW_CFG, env=ASAN_SMALL_QUARANTINE)
    slow0 = raw_on(small_rcvbuf_socket(b.host, b.port))
    slow0.send(connect("slow0"))
    slow0.expect(CONNACK)
    slow0.send(subscribe(1, [("flood/#", 0)]))
    slow0.expect(SUBACK)
    slow1 = raw_on(small_rcvbuf_socket(b.host, b.port))
    slow1.send(connect("slow1", clean=False))
    slow1.expect(CONNACK)
    slow1.send(subscribe(1, [("flood/#", 1)]))
    slow1.expect(SUBACK)
    good = connected_client(b, "good")
    good.send(subscribe(1, [("flood/#", 1)]))
    good.expect(SUBACK)
    pub = connected_client(b, "pub")
    payload = b"x" * MSG

    pid = 0
    seq = 0

    def round_trip():
        nonlocal pid, seq
        data = bytearray()
        for _ in range(BATCH):
            pid = pid % 65535 + 1
            data += publish("flood/t", payload[:-8] + b"%08d" % seq, qos=1, pid=pid)
            seq += 1
        pub.send(bytes(data))
        for _ in range(BATCH):
            p = good.expect(PUBLISH)
            good.send(ack(PUBACK, p.pid))
            got.append(int(p.payload[-8:]))
        for _ in range(BATCH):
            pub.expect(PUBACK)

    got = []
    for _ in range(20):  # warm up: buffers and queues of the slow ones fill
        round_trip()
    before = rss_kib(b.proc.pid)
    for _ in range(ROUNDS):
        round_trip()
    after = rss_kib(b.proc.pid)
    total = seq
    assert got == list(range(total)), "the reading subscriber lost or reordered messages"

    flood_kib = ROUNDS * BATCH * MSG // 1024
    growth = after - before
    print(f"slow consumer: RSS {before} -> {after} KiB (+{growth}) during a {flood_kib} KiB flood")
    # Unbounded buffering would keep the flood twice (two slow subscribers).
    assert growth < flood_kib // 4, f"RSS grew {growth} KiB during a {flood_kib} KiB flood"

    # The QoS 1 subscriber now reads: exactly its window plus its queue.
    n1 = 0
    for _ in range(total):
        try:
            p = slow1.recv(1.0)
        except TimeoutError:
            break
        if p.type == PUBLISH:
            n1 += 1
            slow1.send(ack(PUBACK, p.pid))
    assert n1 == 10 + 50, f"slow QoS 1 subscriber got {n1}, expected inflight 10 + queued 50"
    n0 = sum(1 for p in drain(slow0, quiet=1.0, limit=total) if p.type == PUBLISH)
    assert 0 < n0 < total
    # After the drains: deliveries crossing worker threads have all landed.
    # A drain ends after a quiet second; on a loaded machine the broker can
    # pause longer than that, so what still arrives now counts as delivered.
    st = stats(b)
    n0 += sum(1 for p in drain(slow0, quiet=0.5, limit=total) if p.type == PUBLISH)
    assert n0 < total
    assert st["dropped"] >= (total - n0) + (total - 60)
    # Logged once per episode, not once per message (thousands were dropped).
    # An episode ends when the output drains to half the limit: the kernel's
    # send buffer can grow during the flood and end one early, so a second
    # episode is possible; a log line per drop is not.
    # (Back-pressure, bp.c: a subscriber that reads nothing is first classed
    # stalled, after output_stall_timeout, and logged as such.)
    assert 1 <= (b.log.count("Client slow0 is not reading") +
                 b.log.count("Client slow0 is stalled")) <= 3
    assert 1 <= b.log.count("Queue of client slow1 is full") <= 3
    for c in (slow0, slow1, good, pub):
        c.close()


# ---- very deep topics --------------------------------------------------------

def deep(levels):
    return "/".join(["l"] * levels)


def test_topic_levels_default_201_accepted_202_refused(broker):
    """max_topic_levels defaults to 201 (Mosquitto refuses more than 200
    separators): a 201-level topic is routed, a 202-level PUBLISH gets
    DISCONNECT 0x82 Protocol Error (Mosquitto 2.0's answer, pinned against it
    in test_mosquitto_bytes.py), the subscriber is unaffected."""
    sub = v5_subscriber(broker, "deep-sub", [("l/#", 0)])
    c, _ = v5_client(broker, "deep-pub")
    c.send(publish(deep(201), b"ok", version=5))
    assert sub.expect(PUBLISH).topic == deep(201)
    c.send(publish(deep(202), b"no", version=5))
    got = closed_by_broker(c)
    assert [(p.type, p.reason) for p in got] == [(DISCONNECT, 0x82)]
    sub.expect_nothing()


def test_subscribe_over_topic_levels_refused(broker_factory):
    """A filter deeper than max_topic_levels (counted after $share/NAME/)
    ends the connection, as Mosquitto answers its limit: MQTT 5 DISCONNECT
    0x81, MQTT 3.1.1 closed; nothing of the packet is subscribed."""
    b = broker_factory("max_topic_levels 5\n")
    c, _ = v5_client(b, "deep5")
    c.send(subscribe(1, [(deep(5), 0), ("$share/g/" + deep(5), 0), ("+/+/+/+/#", 1)], version=5))
    assert c.expect(SUBACK).codes == [0, 0, 1]
    for f in (deep(6), "$share/g/" + deep(6)):
        c, _ = v5_client(b, "deep5")
        c.send(subscribe(1, [("a", 0), (f, 0)], version=5))
        assert [(p.type, p.reason) for p in closed_by_broker(c)] == [(DISCONNECT, 0x81)]
    c3 = connected_client(b, "deep3")
    c3.send(subscribe(1, [(deep(6), 0), ("a", 0)]))
    assert closed_by_broker(c3) == []
    c, _ = v5_client(b, "deep5u")
    c.send(unsubscribe(1, [deep(6)], version=5))
    assert [(p.type, p.reason) for p in closed_by_broker(c)] == [(DISCONNECT, 0x81)]


def test_will_topic_over_topic_levels_refused(broker_factory):
    """A will topic deeper than max_topic_levels: the connection is closed
    without CONNACK (MQTT 5 and 3.1.1), as Mosquitto does."""
    b = broker_factory("max_topic_levels 3\n")
    c = RawClient(b, version=5)
    c.send(connect("w5", version=5, will=dict(topic="a/b/c/d", payload=b"x")))
    assert closed_by_broker(c) == []
    c3 = RawClient(b)
    c3.send(connect("w3", will=dict(topic="a/b/c/d", payload=b"x")))
    assert closed_by_broker(c3) == []


def test_v311_publish_over_topic_levels_closed(broker_factory):
    b = broker_factory("max_topic_levels 3\n")
    c = connected_client(b, "p3")
    c.send(publish("a/b/c/d", b"x"))
    assert closed_by_broker(c) == []


def test_longest_topic_65535_bytes_routed_MQTT_4_7_3_3(broker):
    """The longest topic the protocol allows (65535 bytes) is routed."""
    t = "a/" + "b" * 65533
    sub = connected_client(broker, "long-sub")
    sub.send(subscribe(1, [("a/+", 0)]))
    sub.expect(SUBACK)
    c = connected_client(broker, "long-pub")
    c.send(publish(t, b"x"))
    assert sub.expect(PUBLISH).topic == t


# ---- thousands of subscriptions ----------------------------------------------

def test_max_subscriptions_per_client_caps_thousands(broker_factory):
    """One client sends 3000 filters (30 SUBSCRIBE packets): the first 1000
    (the cap) are granted, the rest refused (0x97 Quota exceeded in MQTT 5),
    re-subscribing an existing filter is still fine, and routing works."""
    b = broker_factory("max_subscriptions_per_client 1000\n")
    c, _ = v5_client(b, "many")
    codes = []
    for k in range(30):
        c.send(subscribe(k + 1, [(f"m/{k}/{i}", 0) for i in range(100)], version=5))
        codes += c.expect(SUBACK).codes
    assert codes[:1000] == [0] * 1000 and codes[1000:] == [0x97] * 2000
    c.send(subscribe(99, [("m/0/0", 1)], version=5))
    assert c.expect(SUBACK).codes == [1]
    p, _ = v5_client(b, "many-pub")
    p.send(publish("m/9/99", b"in", version=5) + publish("m/10/0", b"out", version=5))
    assert c.expect(PUBLISH).payload == b"in"
    c.expect_nothing()


def test_thousands_of_subscriptions_v311_cap(broker_factory):
    b = broker_factory("max_subscriptions_per_client 10\n")
    c = connected_client(b, "many3")
    c.send(subscribe(1, [(f"x/{i}", 0) for i in range(2000)]))
    codes = c.expect(SUBACK).codes
    assert codes == [0] * 10 + [0x80] * 1990


# ---- topic aliases -------------------------------------------------------------

def test_topic_alias_remapped_many_times_bounded(broker_factory):
    """A client may re-map its aliases as often as it likes (MQTT-3.3.2-12
    area); the broker keeps one topic per alias, so 3000 re-mappings cost
    nothing more than max_topic_alias topics."""
    b = broker_factory()
    sub = v5_subscriber(b, "alias-sub", [("al/#", 0)])
    c, ca = v5_client(b, "alias-pub")
    n = ca.props.get("topic_alias_maximum", 0)
    assert n >= 1
    data = bytearray()
    for i in range(3000):
        data += publish(f"al/{i}", b"", version=5, properties=[("topic_alias", i % n + 1)])
    c.send(bytes(data))
    c.send(publish("", b"last", version=5, properties=[("topic_alias", 2999 % n + 1)]))
    got = drain(sub, quiet=0.5, limit=3001)
    assert len(got) == 3001 and got[-1].topic == "al/2999" and got[-1].payload == b"last"


def test_topic_alias_0_disconnect_0x94_MQTT_3_3_2_8(broker):
    c, _ = v5_client(broker, "alias0")
    c.send(publish("a", b"x", version=5, properties=[("topic_alias", 0)]))
    assert [(p.type, p.reason) for p in closed_by_broker(c)] == [(DISCONNECT, 0x94)]


def test_topic_alias_over_maximum_disconnect_0x94_MQTT_3_3_2_10(broker):
    c, ca = v5_client(broker, "alias-max")
    n = ca.props.get("topic_alias_maximum", 0)
    c.send(publish("a", b"x", version=5, properties=[("topic_alias", n + 1)]))
    assert [(p.type, p.reason) for p in closed_by_broker(c)] == [(DISCONNECT, 0x94)]


# ---- packet ids and receive maximum --------------------------------------------

def test_outgoing_packet_ids_never_reused_while_in_flight_MQTT_2_2_1_3(broker_factory):
    """With an unlimited in-flight window and a client that never acknowledges,
    the broker uses every packet id 1..65535 once, then holds the next message
    in the queue (no id is free) until one is acknowledged; it is then sent
    with the freed id. No packet id is ever in use twice."""
    b = broker_factory("max_inflight_messages 0\nmax_queued_messages 10\n")
    sub = connected_client(b, "ids-sub", timeout=20)
    sub.send(subscribe(1, [("ids", 1)]))
    sub.expect(SUBACK)
    pub = connected_client(b, "ids-pub", timeout=20)
    total = 65535 + 3
    # QoS 1 from the publisher, acknowledged by the broker as it goes.
    for start in range(0, total, 4096):
        n = min(4096, total - start)
        pub.send(b"".join(publish("ids", b"m", qos=1, pid=(start + i) % 65535 + 1)
                          for i in range(n)))
        for _ in range(n):
            pub.expect(PUBACK)
    seen = set()
    for _ in range(65535):
        p = sub.expect(PUBLISH)
        assert p.pid not in seen, f"packet id {p.pid} reused while in flight"
        seen.add(p.pid)
    assert seen == set(range(1, 65536))
    sub.expect_nothing(0.5)  # the 3 others wait: no id is free
    sub.send(ack(PUBACK, 777))
    p = sub.expect(PUBLISH)
    assert p.pid == 777
    sub.expect_nothing(0.3)


def test_client_max_packet_size_message_discarded_not_blocking_window_MQTT_3_1_2_25(broker):
    """A QoS 1 message larger than the client's Maximum Packet Size is
    discarded for it (MQTT-3.1.2-25) without taking a slot of its Receive
    Maximum: the next, smaller message is delivered."""
    s, _ = v5_client(broker, "mps1", properties=[("maximum_packet_size", 64),
                                                  ("receive_maximum", 1)])
    s.send(subscribe(1, [("mps/#", 1)], version=5))
    s.expect(SUBACK)
    p, _ = v5_client(broker, "mps1-pub")
    p.send(publish("mps/big", b"x" * 200, qos=1, pid=1, version=5))
    p.expect(PUBACK)
    p.send(publish("mps/small", b"ok", qos=1, pid=2, version=5))
    p.expect(PUBACK)
    got = s.expect(PUBLISH)
    assert got.topic == "mps/small" and got.payload == b"ok"


# ---- oversized packets -----------------------------------------------------------

def test_oversized_header_refused_before_body_MQTT_3_2_2_15(broker_factory):
    """A packet header announcing more than max_packet_size is refused as soon
    as the header is read (DISCONNECT 0x95): the broker never waits for, nor
    buffers, the announced body."""
    b = broker_factory("max_packet_size 1000\n")
    c, _ = v5_client(b, "big-hdr")
    c.send(bytes([0x30]) + b"\xff\xff\xff\x7f")  # PUBLISH of 268435455 bytes, no body
    assert [(p.type, p.reason) for p in closed_by_broker(c)] == [(DISCONNECT, 0x95)]


def test_huge_connect_header_closed_before_body(broker):
    """Before CONNECT is handled, packets are capped (256 KiB): a CONNECT
    header announcing 100 MiB is refused at once, whatever max_packet_size."""
    c = RawClient(broker)
    c.send(b"\x10" + b"\x80\x80\x80\x32")  # 100 MiB
    assert closed_by_broker(c, timeout=5) == []


def test_v311_publish_header_over_max_packet_size_closed(broker_factory):
    b = broker_factory("max_packet_size 1000\n")
    c = connected_client(b, "big3")
    c.send(bytes([0x30]) + b"\x80\x80\x04")  # 65536 bytes announced
    assert closed_by_broker(c) == []
    ok = connected_client(b, "ok3")
    ok.send(packet(12, 0, b""))
    ok.expect(13)


def test_non_minimal_remaining_length_v5_malformed_MQTT_1_5_5_1(broker):
    """MQTT 5: the Remaining Length must use the fewest bytes (MQTT-1.5.5-1):
    DISCONNECT 0x81. MQTT 3.1.1 has no such rule and accepts it."""
    c, _ = v5_client(broker, "nm5")
    c.send(b"\xc0\x80\x00")  # PINGREQ, length 0 in two bytes
    assert [(p.type, p.reason) for p in closed_by_broker(c)] == [(DISCONNECT, 0x81)]
    c3 = connected_client(broker, "nm3")
    c3.send(b"\xc0\x80\x00")
    c3.expect(13)
    body = struct.pack("!H", 1) + b"t" + b"x"
    c3.send(bytes([0x30, 0x84, 0x80, 0x00]) + body)  # 4 in three bytes
    c3.send(b"\xc0\x00")
    c3.expect(13)


def test_incoming_qos2_all_65535_ids_unreleased_exactly_once_MQTT_4_3_3_2(broker):
    """An MQTT 3.1.1 client (no Receive Maximum) leaves all 65535 packet ids
    unreleased. Each message is routed once; a re-sent PUBLISH with an id not
    yet released is acknowledged but not routed again (MQTT-4.3.3-2); every
    PUBREL, in any order, is answered with PUBCOMP. (hato keeps these ids in
    a bitmap from 64 on: the worker's cost per packet stays constant.)"""
    sub = connected_client(broker, "q2-sub", timeout=30)
    sub.send(subscribe(1, [("q2/#", 0)]))
    sub.expect(SUBACK)
    c = connected_client(broker, "q2-pub", timeout=30)
    c.send(b"".join(publish("q2/t", b"%d" % i, qos=2, pid=i) for i in range(1, 65536)))
    for _ in range(65535):
        c.expect(PUBREC)
    c.send(publish("q2/t", b"again", qos=2, pid=4242, dup=True))
    assert c.expect(PUBREC).pid == 4242
    got = [sub.expect(PUBLISH).payload for _ in range(65535)]
    assert got == [b"%d" % i for i in range(1, 65536)]
    sub.expect_nothing(0.3)
    c.send(b"".join(ack(PUBREL, i) for i in range(65535, 0, -1)))
    for i in range(65535, 0, -1):
        p = c.expect(PUBCOMP)
        assert p.pid == i
    c.send(ack(PUBREL, 7))  # released already
    assert c.expect(PUBCOMP).pid == 7


def test_pipelining_client_that_never_reads_is_pushed_back(broker_factory):
    """A client that sends PINGREQs (or any request) as fast as it can and
    never reads the answers: once max_output_buffer of answers wait for it,
    hato stops reading its socket, so TCP pushes back on the client and the
    broker's memory stays bounded. When the client reads again, every
    request it got in is answered (nothing lost), and others were served
    throughout."""
    env = {"ASAN_OPTIONS": ASAN_SMALL_QUARANTINE["ASAN_OPTIONS"].replace(
        "quarantine_size_mb=4", "quarantine_size_mb=0")}
    b = broker_factory("max_output_buffer 65536\n", env=env)
    c = raw_on(small_rcvbuf_socket(b.host, b.port))
    c.send(connect("pipeliner"))
    c.expect(CONNACK)
    before = rss_kib(b.proc.pid)
    chunk = b"\xc0\x00" * 32768  # 64 KiB of PINGREQ
    sent = 0
    c.sock.setblocking(False)
    deadline = time.monotonic() + 6
    while sent < 64 << 20 and time.monotonic() < deadline:
        # Blocked for a whole second: the broker has stopped reading us.
        if not select.select([], [c.sock], [], 1.0)[1]:
            break
        try:
            sent += c.sock.send(chunk)
        except BlockingIOError:
            continue
    during = rss_kib(b.proc.pid)
    print(f"pipelining: {sent} bytes accepted before push-back, RSS {before} -> {during} KiB")
    assert during - before < 4 << 10, "answers piled up in the broker"
    assert sent < 16 << 20, "the broker kept reading a client that does not read"
    other = connected_client(b, "other")
    other.send(b"\xc0\x00")
    other.expect(13)
    # Now read: one PINGRESP (2 bytes) per PINGREQ that got in.
    c.sock.setblocking(True)
    c.sock.settimeout(10)
    got = len(c.buf)
    while got < sent:
        data = c.sock.recv(1 << 20)
        assert data, "closed before every PINGREQ was answered"
        got += len(data)
    assert got == sent


def test_tens_of_thousands_of_subscriptions_without_cap(broker):
    """With no max_subscriptions_per_client (the default), one client may hold
    20000 subscriptions; each costs the same to add, replace and remove
    whatever the count (hato indexes a session's filters: a list scan made
    40000 cost the worker 19 s). Routing and UNSUBSCRIBE work throughout."""
    c = connected_client(broker, "lots", timeout=30)
    for k in range(20):
        c.send(subscribe(k + 1, [(f"lots/{k}/{i}", 0) for i in range(1000)]))
    for k in range(20):
        assert c.expect(SUBACK).codes == [0] * 1000
    c.send(subscribe(99, [("lots/7/7", 1)]))  # replace one
    assert c.expect(SUBACK).codes == [1]
    p = connected_client(broker, "lots-pub")
    p.send(publish("lots/19/999", b"last"))
    assert c.expect(PUBLISH).payload == b"last"
    for k in range(20):
        c.send(unsubscribe(100 + k, [f"lots/{k}/{i}" for i in range(1000)]))
    for k in range(20):
        c.expect(11)
    p.send(publish("lots/19/999", b"gone"))
    c.expect_nothing()


def test_mount_point_longest_filter_session_end_no_use_after_free(broker_factory):
    """With a mount point, a filter of 65535 bytes becomes longer than 65535
    once mounted. The session kept its length in 16 bits, so ending the
    session removed nothing from the tree and a later matching PUBLISH
    reached the freed session (heap-use-after-free under ASan). Now the
    filter is removed, the message goes nowhere, the broker stops clean."""
    b = broker_factory("mount_point m/\n")
    f = "+/" * 200 + "X" * 65135  # 65535 bytes, 201 levels
    t = "/" * 200 + "X" * 65135   # matches it: '+' matches empty levels
    c = connected_client(b, "longsub")
    c.send(subscribe(1, [(f, 0)]))
    assert c.expect(SUBACK).codes == [0]
    c.send(b"\xe0\x00")
    c.close()
    b.wait_log("longsub .*disconnected")
    watcher = connected_client(b, "watcher")
    watcher.send(subscribe(1, [("#", 0)]))
    watcher.expect(SUBACK)
    p = connected_client(b, "pub")
    p.send(publish(t, b"x"))
    assert watcher.expect(PUBLISH).topic == t
    p.send(b"\xc0\x00")
    p.expect(13)


def test_mount_point_topic_past_65535_refused_MQTT_4_7_3_3(broker_factory):
    """A 65535-byte topic under a mount point cannot be routed (the mounted
    topic would pass 65535 bytes): MQTT 5 gets DISCONNECT 0x90 Topic Name
    invalid rather than an 'out of memory' close."""
    b = broker_factory("mount_point m/\n")
    c, _ = v5_client(b, "long5")
    c.send(publish("a/" + "b" * 65533, b"x", version=5))
    assert [(p.type, p.reason) for p in closed_by_broker(c)] == [(DISCONNECT, 0x90)]


def test_more_than_65535_matching_subscription_ids_MQTT_3_3_4_3(broker):
    """One MQTT 5 client holds 65537 different filters that all match one
    topic, each with a Subscription Identifier. The message is delivered
    once (MQTT-3.3.4-2 area) carrying identifiers (MQTT-3.3.4-3); their count
    used to be stored in 16 bits, which lost the identifier list (a leak
    and an identifier 0 sent). hato sends at most 65535 of them."""
    import itertools
    topic = "/".join(["a"] * 17)
    filters = []
    for bits in itertools.product((0, 1), repeat=17):  # 2^17 literal/'+' mixes
        filters.append("/".join("+" if x else "a" for x in bits))
        if len(filters) == 65537:
            break
    c, _ = v5_client(broker, "ids", timeout=60)
    for k in range(0, len(filters), 2000):
        c.send(subscribe(k // 2000 + 1, [(f, 0) for f in filters[k:k + 2000]], version=5,
                         properties=[("subscription_id", 7)]))
    for k in range(0, len(filters), 2000):
        c.expect(SUBACK)
    p, _ = v5_client(broker, "ids-pub")
    p.send(publish(topic, b"x", version=5))
    got = c.expect(PUBLISH, timeout=60)
    ids = got.props.get("subscription_id", [])
    assert 1 <= len(ids) <= 65535 and set(ids) == {7}
    c.expect_nothing(0.5)
