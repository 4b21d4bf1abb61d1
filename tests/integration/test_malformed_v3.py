"""Malformed and unexpected packets from MQTT 3.1.1 clients; framing robustness; isolation."""

import struct

import pytest

from mqttraw import (CONNACK, PINGRESP, PUBACK, PUBLISH, SUBACK, RawClient, ack, connect,
                     connect_raw, connected_client, packet, pingreq, publish, s, subscribe,
                     subscribe_ok)


def closed_silently(c, data, timeout=3):
    """Send data; the broker closes the connection and sends nothing first."""
    c.send(data)
    got = c.expect_closed(timeout)
    assert not any(p.type in (PUBLISH, SUBACK, PUBACK, PINGRESP) for p in got), got
    return got


def still_serving(broker):
    """The broker still serves other clients normally."""
    with connected_client(broker, "healthy") as c:
        subscribe_ok(c, 1, [("health/t", 1)])
        c.send(publish("health/t", b"ok", qos=1, pid=2))
        got = [c.recv(), c.recv()]
        assert sorted(p.type for p in got) == [PUBLISH, PUBACK], got


def test_remaining_length_5_bytes_closed_MQTT_4_8_0_1(broker):
    """A Remaining Length longer than 4 bytes is malformed (section 2.2.3): close (MQTT-4.8.0-1)."""
    with connected_client(broker, "rl5") as c:
        closed_silently(c, b"\x30\xff\xff\xff\xff\x7f")
    still_serving(broker)


def test_remaining_length_5_bytes_in_connect_closed_MQTT_4_8_0_1(broker):
    """The same as the very first packet: closed without CONNACK."""
    with RawClient(broker) as c:
        assert closed_silently(c, b"\x10\x80\x80\x80\x80\x01") == []


def test_connect_client_id_length_past_end_closed_MQTT_4_8_0_1(broker):
    """A ClientId whose length prefix runs past the packet end is malformed: close."""
    body = s("MQTT") + b"\x04\x02\x00\x3c" + b"\x00\x10abc"
    with RawClient(broker) as c:
        assert closed_silently(c, packet(1, 0, body)) == []


def test_connect_truncated_variable_header_closed(broker):
    """CONNECT with Remaining Length 0 or a cut variable header: close, no CONNACK."""
    for data in (b"\x10\x00", packet(1, 0, s("MQTT") + b"\x04")):
        with RawClient(broker) as c:
            assert closed_silently(c, data) == []


def test_publish_topic_length_past_end_closed_MQTT_4_8_0_1(broker):
    """A PUBLISH topic length larger than the packet: close (MQTT-4.8.0-1)."""
    with connected_client(broker, "tl") as c:
        closed_silently(c, packet(PUBLISH, 0, b"\x00\x20a/b"))
    still_serving(broker)


def test_qos1_publish_without_packet_id_closed(broker):
    """A QoS 1 PUBLISH too short to hold its packet id is malformed: close."""
    with connected_client(broker, "nopid") as c:
        closed_silently(c, packet(PUBLISH, 2, s("a/b") + b"\x00"))


def test_subscribe_truncated_filter_closed_MQTT_4_8_0_1(broker):
    """A SUBSCRIBE whose last filter is cut (no requested QoS byte / short string): close."""
    for body in (b"\x00\x01" + s("a/b"), b"\x00\x01\x00\x09a/b"):
        with connected_client(broker, "st") as c:
            closed_silently(c, packet(8, 2, body))


def test_connect_trailing_garbage_closed_MQTT_4_8_0_1(broker):
    """Bytes after the last CONNECT payload field make the packet malformed: close."""
    with RawClient(broker) as c:
        got = closed_silently(c, connect_raw(b"trail", extra=b"\x00\x03xyz"))
        assert not any(p.type == CONNACK and p.reason == 0 for p in got), got


def lenient(what):
    return pytest.mark.hato_only(f"mosquitto 2.0.11 ignores this violation ({what}) and keeps the "
                                 "connection open; hato closes it as MQTT 3.1.1 requires")


@pytest.mark.parametrize("data", [
    pytest.param(b"\xc0\x01\x00", marks=lenient("PINGREQ with a body: answers PINGRESP"),
                 id="pingreq-body"),
    pytest.param(b"\xe0\x01\x00", id="disconnect-body"),  # 3.1.1 DISCONNECT has no body
    pytest.param(b"\x40\x03\x00\x01\x00", marks=lenient("3-byte PUBACK"), id="puback-long"),
    pytest.param(b"\x62\x03\x00\x01\x00", marks=lenient("3-byte PUBREL: answers PUBCOMP"),
                 id="pubrel-long"),
    pytest.param(b"\x40\x01\x00", id="puback-short"),
])
def test_wrong_fixed_length_closed_MQTT_4_8_0_1(broker, data):
    """Packets of fixed size with a wrong Remaining Length are malformed: close (MQTT-4.8.0-1)."""
    with connected_client(broker, "fixed") as c:
        closed_silently(c, data)


@pytest.mark.parametrize("data", [
    pytest.param(b"\xc1\x00", marks=lenient("PINGREQ flags 0001: answers PINGRESP"), id="pingreq"),
    pytest.param(b"\x60\x02\x00\x01", id="pubrel"),  # PUBREL flags 0000 (MQTT-3.6.1-1)
    pytest.param(b"\x41\x02\x00\x01", marks=lenient("PUBACK flags 0001"), id="puback"),
    pytest.param(b"\xe8\x00", id="disconnect"),  # DISCONNECT flags 1000
])
def test_reserved_flags_closed_MQTT_2_2_2_2(broker, data):
    """Invalid fixed-header flags: the receiver MUST close the connection (MQTT-2.2.2-2,
    MQTT-3.6.1-1)."""
    with connected_client(broker, "rflags") as c:
        closed_silently(c, data)


@pytest.mark.parametrize("data", [
    pytest.param(b"\x00\x00", id="type0"),  # reserved
    pytest.param(b"\xf0\x00", id="type15"),  # reserved in 3.1.1 (AUTH in 5)
    pytest.param(b"\x20\x02\x00\x00", id="connack"),  # server to client only
    pytest.param(b"\x90\x03\x00\x01\x00", marks=lenient("SUBACK from a client"), id="suback"),
    pytest.param(b"\xb0\x02\x00\x01", marks=lenient("UNSUBACK from a client"), id="unsuback"),
    pytest.param(b"\xd0\x00", marks=lenient("PINGRESP from a client"), id="pingresp"),
])
def test_unexpected_packet_types_closed_MQTT_4_8_0_1(broker, data):
    """Reserved packet types and server-to-client packets sent by a client: close (MQTT-4.8.0-1)."""
    with connected_client(broker, "types") as c:
        closed_silently(c, data)


def test_malformed_client_does_not_affect_others_MQTT_4_8_0_1(broker):
    """After client A is closed for a malformed packet, client B (connected before and after)
    still publishes and receives."""
    with connected_client(broker, "B") as b:
        subscribe_ok(b, 1, [("iso/t", 1)])
        with connected_client(broker, "A") as a:
            subscribe_ok(a, 1, [("iso/t", 1)])
            closed_silently(a, b"\x30\xff\xff\xff\xff\x7f")
        b.send(publish("iso/t", b"after", qos=1, pid=1))
        got = [b.recv(), b.recv()]
        assert sorted(p.type for p in got) == [PUBLISH, PUBACK], got
        pub = [p for p in got if p.type == PUBLISH][0]
        assert pub.payload == b"after"
        b.send(ack(PUBACK, pub.pid))
    still_serving(broker)


def test_abandoned_partial_packet_does_not_affect_others(broker):
    """A client that announces a large packet and vanishes mid-way leaves the broker healthy."""
    with connected_client(broker, "half") as c:
        c.send(b"\x30\xff\xff\x03" + s("x/y") + b"z" * 100)
    still_serving(broker)


def test_byte_by_byte_delivery_is_reassembled(broker):
    """Packets split at every byte boundary are reassembled (TCP is a stream)."""
    with RawClient(broker) as c:
        data = connect("trickle") + subscribe(3, [("tr/t", 1)]) + publish("tr/t", b"slow", qos=1,
                                                                           pid=4)
        for i in range(len(data)):
            c.send(data[i:i + 1])
        got = [c.recv() for _ in range(4)]
        types = [p.type for p in got]
        assert types[:2] == [CONNACK, SUBACK], got
        assert sorted(types[2:]) == [PUBLISH, PUBACK], got


def test_coalesced_packets_all_processed(broker):
    """Many packets in one TCP write are all processed in order."""
    with RawClient(broker) as c:
        data = connect("burst") + subscribe(1, [("bu/t", 0)]) + \
            b"".join(publish("bu/t", b"%d" % i) for i in range(20)) + pingreq()
        c.send(data)
        assert c.expect(CONNACK).reason == 0
        c.expect(SUBACK)
        got = [c.expect(PUBLISH).payload for _ in range(20)]
        assert got == [b"%d" % i for i in range(20)]
        c.expect(PINGRESP)


def test_valid_pubrel_and_multibyte_length_accepted_MQTT_3_6_1_1(broker):
    """Control for the malformed cases: a PUBREL with flags 0010 (MQTT-3.6.1-1) and a PUBLISH
    with a 3-byte Remaining Length are accepted and the connection stays usable."""
    with connected_client(broker, "ok") as c:
        c.send(packet(6, 2, struct.pack("!H", 1)))
        assert c.expect(7).pid == 1
        c.send(publish("big/x", b"a" * 20000))
        c.send(pingreq())
        c.expect(PINGRESP)
