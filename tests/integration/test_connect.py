"""CONNECT / CONNACK for MQTT 3.1.1 and 3.1 (raw packets, byte-exact where it matters)."""

import pytest

from mqttraw import (CONNACK, PINGRESP, PUBLISH, RawClient, connect, connect_raw,
                     connected_client, pingreq, publish, recv_publish, s, subscribe_ok)


def refused_then_closed(c, data, timeout=3):
    """Send data; the broker must close without ever accepting the connection."""
    c.send(data)
    got = c.expect_closed(timeout)
    assert not any(p.type == CONNACK and p.reason == 0 for p in got), got
    return got


def test_connack_accepted_exact_bytes_MQTT_3_2_2_1(broker):
    """CONNACK is 20 02 00 00 for an accepted clean session (MQTT-3.2.2-1, MQTT-3.1.4-4)."""
    with RawClient(broker) as c:
        c.send(connect("c1", clean=True))
        p = c.expect(CONNACK)
        assert p.flags == 0
        assert p.body == b"\x00\x00"
        c.send(pingreq())
        c.expect(PINGRESP)


def test_unacceptable_protocol_level_rc1_then_close_MQTT_3_1_2_2(broker):
    """Level 6 with name MQTT: CONNACK rc 0x01, session present 0, then close
    (MQTT-3.1.2-2, MQTT-3.2.2-4, MQTT-3.2.2-5)."""
    with RawClient(broker) as c:
        c.send(connect_raw(b"c1", level=6))
        got = c.expect_closed(3)
        assert len(got) == 1 and got[0].type == CONNACK, got
        assert got[0].body == b"\x00\x01"


def test_bad_protocol_name_closed_MQTT_3_1_2_1(broker):
    """Protocol name other than MQTT/MQIsdp: the server may disconnect, and must not accept
    (MQTT-3.1.2-1)."""
    with RawClient(broker) as c:
        refused_then_closed(c, connect_raw(b"c1", name=b"MQTX", level=4))


def test_empty_client_id_without_clean_session_rc2_MQTT_3_1_3_8(broker):
    """Zero-length ClientId with CleanSession 0: CONNACK 0x02 then close (MQTT-3.1.3-8,
    MQTT-3.2.2-4)."""
    with RawClient(broker) as c:
        c.send(connect("", clean=False))
        got = c.expect_closed(3)
        assert len(got) == 1 and got[0].type == CONNACK, got
        assert got[0].body == b"\x00\x02"


def test_empty_client_id_with_clean_session_assigned_MQTT_3_1_3_6(broker):
    """Zero-length ClientId with CleanSession 1 is accepted and gets a unique id
    (MQTT-3.1.3-6): two such clients coexist and both work."""
    a = connected_client(broker, "")
    b = connected_client(broker, "")
    try:
        assert a.connack.body == b"\x00\x00"
        subscribe_ok(a, 1, [("anon/t", 0)])
        subscribe_ok(b, 1, [("anon/t", 0)])
        a.send(publish("anon/t", b"hi"))
        for c in (a, b):
            p = recv_publish(c)
            assert p.payload == b"hi"
        # neither was taken over by the other
        for c in (a, b):
            c.send(pingreq())
            c.expect(PINGRESP)
    finally:
        a.close()
        b.close()


def test_client_id_23_chars_accepted_MQTT_3_1_3_5(broker):
    """The server MUST allow ClientIds of 1..23 bytes of [0-9a-zA-Z] (MQTT-3.1.3-5)."""
    cid = "aZ09" * 5 + "xyz"
    assert len(cid) == 23
    with connected_client(broker, cid, clean=False) as c:
        assert c.connack.reason == 0


def test_mqtt31_mqisdp_level3_works(broker):
    """MQTT 3.1 (protocol name MQIsdp, level 3): accepted, publish/subscribe work."""
    with connected_client(broker, "v31client", version=3) as c:
        assert c.connack.body == b"\x00\x00"
        subscribe_ok(c, 5, [("v31/t", 1)])
        c.send(publish("v31/t", b"payload", qos=1, pid=9))
        got = [c.recv(), c.recv()]
        types = sorted(p.type for p in got)
        assert types == [PUBLISH, 4], got  # the PUBACK for our message and the delivery
        pub = [p for p in got if p.type == PUBLISH][0]
        assert pub.payload == b"payload" and pub.qos == 1


def test_mqtt31_connack_has_no_session_present(broker):
    """MQTT 3.1 has no session present flag: resuming a 3.1 persistent session still gets a CONNACK
    whose first byte is 0 (reserved in 3.1), and the session is resumed (its subscription works)."""
    with connected_client(broker, "v31sess", version=3, clean=False) as c:
        subscribe_ok(c, 1, [("v31/s", 0)])
        c.send(b"\xe0\x00")
        c.expect_closed(3)
    with connected_client(broker, "v31sess", version=3, clean=False) as c:
        assert c.connack.body == b"\x00\x00"
        c.send(publish("v31/s", b"resumed"))
        assert recv_publish(c).payload == b"resumed"


def test_mqtt31_empty_client_id_rejected_rc2(broker):
    """MQTT 3.1 requires a 1..23 character ClientId: empty -> CONNACK 0x02 (identifier rejected)."""
    with RawClient(broker, version=3) as c:
        c.send(connect("", version=3, clean=True))
        got = c.expect_closed(3)
        assert got and got[0].type == CONNACK and got[0].reason == 2, got


def test_first_packet_not_connect_closed_MQTT_3_1_0_1(broker):
    """A first packet other than CONNECT closes the connection with nothing sent (MQTT-3.1.0-1)."""
    with RawClient(broker) as c:
        c.send(pingreq())
        assert c.expect_closed(3) == []
    with RawClient(broker) as c:
        c.send(publish("x/y", b"data"))
        assert c.expect_closed(3) == []


def test_second_connect_closed_MQTT_3_1_0_2(broker):
    """A second CONNECT is a protocol violation: the connection is closed (MQTT-3.1.0-2)."""
    with connected_client(broker, "twice") as c:
        c.send(connect("twice"))
        got = c.expect_closed(3)
        assert not any(p.type == CONNACK for p in got), got


def test_reserved_connect_flag_closed_MQTT_3_1_2_3(broker):
    """Reserved bit 0 of the connect flags set: disconnect (MQTT-3.1.2-3)."""
    with RawClient(broker) as c:
        refused_then_closed(c, connect_raw(b"resv", flags=0x03))


def test_will_qos_3_closed_MQTT_3_1_2_12(broker):
    """Will flag with Will QoS 3: protocol violation, disconnect (MQTT-3.1.2-12)."""
    with RawClient(broker) as c:
        data = connect_raw(b"wq3", flags=0x02 | 0x04 | (3 << 3), extra=s("w/t") + s(b"m"))
        refused_then_closed(c, data)


@pytest.mark.parametrize("flags,rule", [
    (0x02 | (1 << 3), "MQTT-3.1.2-11 will QoS 1 without will flag"),
    (0x02 | (2 << 3), "MQTT-3.1.2-11 will QoS 2 without will flag"),
    (0x02 | 0x20, "MQTT-3.1.2-13 will retain without will flag"),
])
def test_will_bits_without_will_flag_closed_MQTT_3_1_2_11_13(broker, flags, rule):
    """Will QoS / Will Retain set while Will Flag is 0: disconnect (MQTT-3.1.2-11, MQTT-3.1.2-13)."""
    with RawClient(broker) as c:
        refused_then_closed(c, connect_raw(b"nowill", flags=flags))


def test_password_without_username_closed_MQTT_3_1_2_22(broker):
    """Password flag set with User Name flag 0 in 3.1.1: disconnect (MQTT-3.1.2-22)."""
    with RawClient(broker) as c:
        refused_then_closed(c, connect_raw(b"pw", flags=0x02 | 0x40, extra=s(b"secret")))


def test_username_and_password_accepted_anonymous_MQTT_3_1_2_17_21(broker):
    """User name and password fields present when flagged are parsed (MQTT-3.1.2-17, MQTT-3.1.2-21);
    with allow_anonymous the connection is accepted."""
    with connected_client(broker, "up", username="user", password="pass") as c:
        c.send(pingreq())
        c.expect(PINGRESP)


@pytest.mark.parametrize("cid", [
    b"\xff\xfe",            # not UTF-8 at all
    b"ab\xc0\x80",          # overlong encoding of U+0000
    b"a\xed\xa0\x80b",      # UTF-16 surrogate half
    b"ab\xe2\x82",          # truncated sequence
], ids=["ff-fe", "overlong", "surrogate", "truncated"])
def test_ill_formed_utf8_client_id_closed_MQTT_1_5_3_1(broker, cid):
    """Ill-formed UTF-8 in the ClientId: the server MUST close the connection (MQTT-1.5.3-1)."""
    with RawClient(broker) as c:
        refused_then_closed(c, connect_raw(cid))


def test_nul_in_client_id_closed_MQTT_1_5_3_2(broker):
    """U+0000 in a UTF-8 string (the ClientId): the server MUST close the connection (MQTT-1.5.3-2)."""
    with RawClient(broker) as c:
        refused_then_closed(c, connect_raw(b"a\x00b"))


def test_session_present_flags_MQTT_3_2_2_1_2_3(broker):
    """Session present: 0 for a new persistent session (MQTT-3.2.2-3), 1 when resuming it
    (MQTT-3.2.2-2), 0 with CleanSession 1 (MQTT-3.2.2-1), and 0 again after the clean
    session discarded the stored one (MQTT-3.1.2-6)."""
    with connected_client(broker, "sp", clean=False) as c:
        assert c.connack.body == b"\x00\x00"
        c.send(b"\xe0\x00")
        c.expect_closed(3)
    with connected_client(broker, "sp", clean=False) as c:
        assert c.connack.body == b"\x01\x00"
        c.send(b"\xe0\x00")
        c.expect_closed(3)
    with connected_client(broker, "sp", clean=True) as c:
        assert c.connack.body == b"\x00\x00"
        c.send(b"\xe0\x00")
        c.expect_closed(3)
    with connected_client(broker, "sp", clean=False) as c:
        assert c.connack.body == b"\x00\x00"


def test_session_takeover_closes_first_connection_MQTT_3_1_4_2(broker):
    """A second connection with the same ClientId disconnects the existing one (MQTT-3.1.4-2);
    the new one is fully usable."""
    first = connected_client(broker, "dup-id")
    second = connected_client(broker, "dup-id")
    try:
        first.expect_closed(3)
        subscribe_ok(second, 2, [("take/over", 0)])
        second.send(publish("take/over", b"x"))
        assert recv_publish(second).payload == b"x"
    finally:
        first.close()
        second.close()


def test_disconnect_closes_connection_MQTT_3_14_4_1(broker):
    """After DISCONNECT the server closes the network connection (MQTT-3.14.4-1 for the client,
    and the server discards the connection)."""
    with connected_client(broker, "bye") as c:
        c.send(b"\xe0\x00")
        assert c.expect_closed(3) == []


@pytest.mark.hato_only("connect_timeout is a hato directive; mosquitto 2.0 has no such option")
def test_connect_timeout_closes_silent_client_MQTT_3_1_4_1(broker_factory):
    """A client that does not send CONNECT within connect_timeout is closed (hato: connect_timeout;
    the spec suggests closing such connections after a reasonable time, section 3.1.4)."""
    b = broker_factory("connect_timeout 1\n")
    with RawClient(b) as c:
        assert c.expect_closed(4) == []
    # a client that connects in time is not affected
    with connected_client(b, "intime") as c:
        c.expect_nothing(1.5)
        c.send(pingreq())
        c.expect(PINGRESP)


@pytest.mark.hato_only("connect_timeout is a hato directive; mosquitto 2.0 has no such option")
def test_connect_timeout_partial_connect_closed(broker_factory):
    """A CONNECT that never completes (half the bytes) is also closed after connect_timeout."""
    b = broker_factory("connect_timeout 1\n")
    with RawClient(b) as c:
        data = connect("slow")
        c.send(data[:len(data) // 2])
        assert c.expect_closed(4) == []
