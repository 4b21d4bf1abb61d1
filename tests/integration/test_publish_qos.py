"""PUBLISH and the QoS 0/1/2 flows for MQTT 3.1.1 (raw packets, exact flows)."""

import struct

import pytest

from mqttraw import (PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, ack,
                     connected_client, packet, pingreq, publish, publish_ok, recv_publish, s,
                     subscribe_ok)


def pair(broker, sub_qos=2, topic="q/t", sub_id="sub", pub_id="pub", clean=True):
    sub = connected_client(broker, sub_id, clean=clean)
    subscribe_ok(sub, 1, [(topic, sub_qos)])
    pub = connected_client(broker, pub_id)
    return sub, pub


def closes(c, data, timeout=3):
    c.send(data)
    c.expect_closed(timeout)


def test_qos0_flow_exact_MQTT_3_3_4_1(broker):
    """QoS 0: no response to the publisher (MQTT-3.3.4-1), delivered with QoS 0, DUP 0, no
    packet id (MQTT-4.3.1-1, MQTT-2.3.1-5)."""
    sub, pub = pair(broker, 0)
    with sub, pub:
        pub.send(publish("q/t", b"zero"))
        p = sub.expect(PUBLISH)
        assert p.flags == 0
        assert p.body == s("q/t") + b"zero"
        pub.expect_nothing(0.3)


def test_qos1_flow_exact_MQTT_4_3_2_2(broker):
    """QoS 1: publisher gets PUBACK 40 02 <pid> (MQTT-3.3.4-1, MQTT-4.3.2-2, MQTT-2.3.1-6);
    subscriber gets QoS 1, DUP 0, non-zero packet id (MQTT-4.3.2-1, MQTT-2.3.1-1)."""
    sub, pub = pair(broker, 1)
    with sub, pub:
        pub.send(publish("q/t", b"one", qos=1, pid=0x1234))
        a = pub.expect(PUBACK)
        assert a.flags == 0 and a.body == b"\x12\x34"
        p = sub.expect(PUBLISH)
        assert p.flags == 0x02 and p.qos == 1 and not p.dup
        assert p.pid != 0
        assert p.body == s("q/t") + struct.pack("!H", p.pid) + b"one"
        sub.send(ack(PUBACK, p.pid))
        sub.expect_nothing(0.3)


def test_qos2_flow_exact_MQTT_4_3_3_2(broker):
    """QoS 2 as receiver (broker): PUBREC 50 02 pid, PUBREL -> PUBCOMP 70 02 pid (MQTT-4.3.3-2);
    as sender: PUBLISH QoS 2 DUP 0 (MQTT-4.3.3-1), PUBREL with flags 0010 (MQTT-3.6.1-1)."""
    sub, pub = pair(broker, 2)
    with sub, pub:
        pub.send(publish("q/t", b"two", qos=2, pid=77))
        rec = pub.expect(PUBREC)
        assert rec.flags == 0 and rec.body == struct.pack("!H", 77)
        pub.send(ack(PUBREL, 77))
        comp = pub.expect(PUBCOMP)
        assert comp.flags == 0 and comp.body == struct.pack("!H", 77)

        p = sub.expect(PUBLISH)
        assert p.flags == 0x04 and p.qos == 2 and not p.dup and p.pid != 0
        assert p.payload == b"two"
        sub.send(ack(PUBREC, p.pid))
        rel = sub.expect(PUBREL)
        assert rel.flags == 0x02 and rel.body == struct.pack("!H", p.pid)
        sub.send(ack(PUBCOMP, p.pid))
        sub.expect_nothing(0.3)


def test_delivered_qos_is_min_of_pub_and_granted_MQTT_3_8_4_6(broker):
    """Delivered QoS = min(published QoS, granted QoS) for all 9 combinations (MQTT-3.8.4-6)."""
    subs = {}
    try:
        for q in range(3):
            subs[q] = connected_client(broker, f"s{q}")
            assert subscribe_ok(subs[q], 1, [("min/q", q)]).codes == [q]
        with connected_client(broker, "p") as pub:
            for pq in range(3):
                publish_ok(pub, "min/q", f"pq{pq}".encode(), qos=pq, pid=10 + pq)
                for sq, c in subs.items():
                    p = recv_publish(c)
                    assert p.payload == f"pq{pq}".encode()
                    assert p.qos == min(pq, sq), (pq, sq, p)
    finally:
        for c in subs.values():
            c.close()


def test_qos2_duplicate_before_pubrel_delivered_once_MQTT_4_3_3_2(broker):
    """A QoS 2 PUBLISH re-sent with DUP=1 before PUBREL is acknowledged with PUBREC again but
    not delivered twice (MQTT-4.3.3-2)."""
    sub, pub = pair(broker, 2)
    with sub, pub:
        pub.send(publish("q/t", b"once", qos=2, pid=5))
        assert pub.expect(PUBREC).pid == 5
        pub.send(publish("q/t", b"once", qos=2, pid=5, dup=True))
        assert pub.expect(PUBREC).pid == 5
        pub.send(ack(PUBREL, 5))
        assert pub.expect(PUBCOMP).pid == 5
        p = recv_publish(sub)
        assert p.payload == b"once"
        sub.expect_nothing(0.5)
        # the packet id is free again: a new message with pid 5 is a new message
        publish_ok(pub, "q/t", b"again", qos=2, pid=5)
        assert recv_publish(sub).payload == b"again"
        sub.expect_nothing(0.3)


def test_pubrel_unknown_pid_gets_pubcomp_MQTT_4_3_3_2(broker):
    """PUBREL for a packet id the broker does not know is still answered by PUBCOMP with the
    same id (MQTT-4.3.3-2)."""
    with connected_client(broker, "rel") as c:
        c.send(ack(PUBREL, 4242))
        comp = c.expect(PUBCOMP)
        assert comp.body == struct.pack("!H", 4242)


def test_qos1_ordering_100_messages_MQTT_4_6_0_6(broker):
    """100 QoS 1 messages from one client are delivered in order (MQTT-4.6.0-6) and the
    PUBACKs come back in order (MQTT-4.6.0-2)."""
    sub, pub = pair(broker, 1, topic="order/t")
    with sub, pub:
        n = 100
        pub.send(b"".join(publish("order/t", f"m{i}".encode(), qos=1, pid=i + 1) for i in range(n)))
        got = []
        for _ in range(n):
            p = recv_publish(sub)
            got.append(p.payload)
        assert got == [f"m{i}".encode() for i in range(n)]
        acks = [pub.expect(PUBACK).pid for _ in range(n)]
        assert acks == list(range(1, n + 1))


@pytest.mark.parametrize("n", [
    15,
    pytest.param(60, marks=pytest.mark.hato_only(
        "mosquitto 2.0.11 never sends QoS 2 messages queued beyond max_inflight_messages (20) "
        "for a subscriber that receives a burst; hato delivers all of them")),
])
def test_qos2_ordering_pipelined_MQTT_4_6_0_6(broker, n):
    """n pipelined QoS 2 messages are all delivered, in order (MQTT-4.6.0-6, MQTT-4.3.3-2)."""
    sub, pub = pair(broker, 2, topic="order/t2")
    with sub, pub:
        pub.send(b"".join(publish("order/t2", f"m{i}".encode(), qos=2, pid=i + 1) for i in range(n)))
        for i in range(n):
            assert pub.expect(PUBREC).pid == i + 1
        pub.send(b"".join(ack(PUBREL, i + 1) for i in range(n)))
        for i in range(n):
            assert pub.expect(PUBCOMP).pid == i + 1
        # the broker may pipeline: answer PUBLISH with PUBREC and PUBREL with PUBCOMP as they come
        got, released = [], 0
        for _ in range(2 * n):
            p = sub.recv()
            if p.type == PUBLISH:
                assert p.qos == 2
                got.append(p.payload)
                sub.send(ack(PUBREC, p.pid))
            else:
                assert p.type == PUBREL, p
                released += 1
                sub.send(ack(PUBCOMP, p.pid))
        assert released == n
        assert got == [f"m{i}".encode() for i in range(n)]
        sub.expect_nothing(0.3)


def test_mixed_qos_ordering_per_subscriber_MQTT_4_6_0_6(broker):
    """QoS 0 messages on one topic keep their order as well (MQTT-4.6.0-6)."""
    sub, pub = pair(broker, 0, topic="order/q0")
    with sub, pub:
        pub.send(b"".join(publish("order/q0", f"m{i}".encode()) for i in range(50)))
        got = [sub.expect(PUBLISH).payload for _ in range(50)]
        assert got == [f"m{i}".encode() for i in range(50)]


@pytest.mark.parametrize("topic", ["a/+", "a/#", "+", "#", "a/b+c"])
def test_wildcard_in_topic_name_closed_MQTT_3_3_2_2(broker, topic):
    """Wildcard characters in a PUBLISH Topic Name: the connection is closed (MQTT-3.3.2-2,
    MQTT-4.7.1-1)."""
    with connected_client(broker, "wild") as c:
        closes(c, publish(topic, b"x"))


def test_empty_topic_name_closed_MQTT_4_7_3_1(broker):
    """Topic Names must be at least one character long (MQTT-4.7.3-1)."""
    with connected_client(broker, "empty") as c:
        closes(c, publish("", b"x"))


def test_invalid_utf8_topic_name_closed_MQTT_1_5_3_1(broker):
    """Ill-formed UTF-8 in a Topic Name closes the connection (MQTT-1.5.3-1, MQTT-3.3.2-1)."""
    with connected_client(broker, "badutf") as c:
        closes(c, packet(PUBLISH, 0, s(b"a/\xff\xfe") + b"x"))


def test_nul_in_topic_name_closed_MQTT_1_5_3_2(broker):
    """U+0000 in a Topic Name closes the connection (MQTT-1.5.3-2)."""
    with connected_client(broker, "nul") as c:
        closes(c, packet(PUBLISH, 0, s(b"a/\x00") + b"x"))


def test_qos3_publish_closed_MQTT_3_3_1_4(broker):
    """A PUBLISH with both QoS bits set is malformed: close (MQTT-3.3.1-4)."""
    with connected_client(broker, "q3") as c:
        closes(c, packet(PUBLISH, 0x06, s("a/b") + b"\x00\x01x"))


def test_qos1_publish_packet_id_zero_closed_MQTT_2_3_1_1(broker):
    """QoS > 0 PUBLISH must carry a non-zero packet id (MQTT-2.3.1-1): close on 0."""
    with connected_client(broker, "pid0") as c:
        closes(c, publish("a/b", b"x", qos=1, pid=0))


@pytest.mark.hato_only("mosquitto 2.0.11 accepts DUP=1 on a QoS 0 PUBLISH; hato closes (MQTT-3.3.1-2)")
def test_dup_with_qos0_closed_MQTT_3_3_1_2(broker):
    """DUP MUST be 0 for QoS 0 messages (MQTT-3.3.1-2): hato treats DUP=1 with QoS 0 as a
    protocol violation and closes the connection."""
    with connected_client(broker, "dup0") as c:
        closes(c, publish("a/b", b"x", qos=0, dup=True))


def test_retain_flag_zero_on_live_forward_MQTT_3_3_1_9(broker):
    """A retained PUBLISH forwarded to an already established subscription has RETAIN 0
    (MQTT-3.3.1-9)."""
    sub, pub = pair(broker, 1, topic="live/r")
    with sub, pub:
        publish_ok(pub, "live/r", b"r", qos=1, pid=3, retain=True)
        p = recv_publish(sub)
        assert not p.retain and p.payload == b"r"
        publish_ok(pub, "live/r", b"", qos=0, retain=True)


def test_dup_flag_zero_on_forward_of_dup_publish_MQTT_3_3_1_3(broker):
    """The DUP flag of an outgoing PUBLISH is set independently of the incoming one
    (MQTT-3.3.1-3): a DUP=1 QoS 1 publish is forwarded with DUP=0."""
    sub, pub = pair(broker, 1, topic="dup/t")
    with sub, pub:
        pub.send(publish("dup/t", b"d", qos=1, pid=8, dup=True))
        assert pub.expect(PUBACK).pid == 8
        p = recv_publish(sub)
        assert not p.dup


def test_qos1_publish_without_subscribers_acked_MQTT_3_3_4_1(broker):
    """A QoS 1/2 publish to a topic nobody subscribes is still acknowledged (MQTT-3.3.4-1)."""
    with connected_client(broker, "lonely") as c:
        publish_ok(c, "nobody/here", b"x", qos=1, pid=1)
        publish_ok(c, "nobody/here", b"x", qos=2, pid=2)


def test_large_payload_intact(broker):
    """A ~300 kB payload (3-byte Remaining Length, section 2.2.3) arrives intact."""
    sub, pub = pair(broker, 1, topic="big/t")
    with sub, pub:
        data = bytes(range(256)) * 1200
        publish_ok(pub, "big/t", data, qos=1, pid=1)
        p = recv_publish(sub)
        assert p.payload == data


def test_redelivery_with_dup_on_reconnect_qos1_MQTT_4_4_0_1(broker):
    """Unacknowledged QoS 1 messages are re-sent with DUP=1 and the same packet id when a
    persistent session reconnects (MQTT-4.4.0-1, MQTT-3.3.1-1, MQTT-2.3.1-3)."""
    sub, pub = pair(broker, 1, topic="re/q1", sub_id="re1", clean=False)
    with pub:
        publish_ok(pub, "re/q1", b"a", qos=1, pid=1)
        publish_ok(pub, "re/q1", b"b", qos=1, pid=2)
        first = [recv_publish(sub, complete=False) for _ in range(2)]
        assert [p.payload for p in first] == [b"a", b"b"]
        assert not any(p.dup for p in first)
        sub.close()  # no PUBACK, no DISCONNECT
        with connected_client(broker, "re1", clean=False) as sub2:
            assert sub2.connack.session_present
            again = [sub2.expect(PUBLISH) for _ in range(2)]
            assert [p.payload for p in again] == [b"a", b"b"]  # original order (MQTT-4.6.0-1)
            assert all(p.dup and p.qos == 1 for p in again)
            assert [p.pid for p in again] == [p.pid for p in first]
            for p in again:
                sub2.send(ack(PUBACK, p.pid))
            sub2.expect_nothing(0.3)
            # acknowledged messages are gone for good
            sub2.send(pingreq())
            sub2.expect(PINGRESP)


def test_redelivery_with_dup_on_reconnect_qos2_MQTT_4_4_0_1(broker):
    """An unacknowledged QoS 2 PUBLISH (no PUBREC) is re-sent with DUP=1, same pid
    (MQTT-4.4.0-1)."""
    sub, pub = pair(broker, 2, topic="re/q2", sub_id="re2", clean=False)
    with pub:
        publish_ok(pub, "re/q2", b"x", qos=2, pid=1)
        first = recv_publish(sub, complete=False)
        assert not first.dup
        sub.close()
        with connected_client(broker, "re2", clean=False) as sub2:
            p = sub2.expect(PUBLISH)
            assert p.dup and p.qos == 2 and p.pid == first.pid and p.payload == b"x"
            sub2.send(ack(PUBREC, p.pid))
            rel = sub2.expect(PUBREL)
            assert rel.pid == p.pid
            sub2.send(ack(PUBCOMP, p.pid))
            sub2.expect_nothing(0.3)


def test_pubrel_resent_after_reconnect_MQTT_4_4_0_1(broker):
    """After PUBREC was received, reconnecting re-sends the PUBREL (not the PUBLISH)
    with the same packet id (MQTT-4.4.0-1, MQTT-4.3.3-1)."""
    sub, pub = pair(broker, 2, topic="re/rel", sub_id="re3", clean=False)
    with pub:
        publish_ok(pub, "re/rel", b"y", qos=2, pid=1)
        p = sub.expect(PUBLISH)
        sub.send(ack(PUBREC, p.pid))
        rel = sub.expect(PUBREL)
        assert rel.pid == p.pid
        sub.close()  # no PUBCOMP
        with connected_client(broker, "re3", clean=False) as sub2:
            rel2 = sub2.expect(PUBREL)
            assert rel2.pid == p.pid and rel2.flags == 2
            sub2.send(ack(PUBCOMP, rel2.pid))
            sub2.expect_nothing(0.3)


def test_incoming_qos2_state_survives_reconnect_MQTT_4_3_3_2(broker):
    """The broker keeps an incoming QoS 2 message's state in a persistent session: the
    publisher reconnects, re-sends PUBREL and gets PUBCOMP; the message is delivered once."""
    sub = connected_client(broker, "sink")
    subscribe_ok(sub, 1, [("in/q2", 2)])
    with sub:
        pub = connected_client(broker, "src", clean=False)
        pub.send(publish("in/q2", b"z", qos=2, pid=9))
        assert pub.expect(PUBREC).pid == 9
        pub.close()
        with connected_client(broker, "src", clean=False) as pub2:
            assert pub2.connack.session_present
            pub2.send(ack(PUBREL, 9))
            assert pub2.expect(PUBCOMP).pid == 9
        assert recv_publish(sub).payload == b"z"
        sub.expect_nothing(0.3)


def test_packet_ids_distinct_for_inflight_MQTT_2_3_1_2(broker):
    """Packet ids the broker assigns to concurrent unacknowledged messages are distinct and
    non-zero (MQTT-2.3.1-2, MQTT-2.3.1-1)."""
    sub, pub = pair(broker, 1, topic="ids/t")
    with sub, pub:
        for i in range(10):
            publish_ok(pub, "ids/t", b"%d" % i, qos=1, pid=i + 1)
        got = [sub.expect(PUBLISH) for _ in range(10)]
        pids = [p.pid for p in got]
        assert 0 not in pids and len(set(pids)) == 10
        for p in got:
            sub.send(ack(PUBACK, p.pid))
