"""MQTT 5.0 PUBLISH: forwarded properties, Message Expiry, Topic Aliases in
both directions, Receive Maximum in both directions, Maximum Packet Size of
the client, PUBACK/PUBREC/PUBCOMP reason codes, QoS 2 with MQTT 5 flows.
"""

import time

import pytest

from mqttraw import (DISCONNECT, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK, ack, drain,
                     publish, subscribe, sub_opts, v5_client, v5_subscriber)


def _closed_with(c, code):
    got = c.expect_closed()
    assert [(p.type, p.reason) for p in got] == [(DISCONNECT, code)], got
    return got[0]


def test_publish_properties_forwarded_unaltered_MQTT_3_3_2_4_MQTT_3_3_2_15_to_20(broker):
    s = v5_subscriber(broker, "props-sub", [("props/t", sub_opts(1))])
    p, _ = v5_client(broker, "props-pub")
    user = [("z", "1"), ("a", "2"), ("z", "0"), ("", ""), ("k\u00e9y", "v\u00e4l")]
    p.send(publish("props/t", "h\u00e9llo", qos=1, pid=7, version=5, properties=[
        ("payload_format", 1), ("content_type", "text/plain; charset=utf-8"),
        ("response_topic", "props/reply"), ("correlation_data", b"\x00\x01\xfe\xff"),
    ] + [("user_property", kv) for kv in user]))
    assert p.expect(PUBACK).reason == 0x00
    m = s.expect(PUBLISH)
    assert (m.topic, m.payload, m.qos) == ("props/t", "h\u00e9llo".encode(), 1)
    assert m.props.get("payload_format") == 1                           # MQTT-3.3.2-4
    assert m.props.get("response_topic") == "props/reply"               # MQTT-3.3.2-15
    assert m.props.get("correlation_data") == b"\x00\x01\xfe\xff"       # MQTT-3.3.2-16
    assert m.user_props == user                                         # MQTT-3.3.2-17/-18
    assert m.props.get("content_type") == "text/plain; charset=utf-8"   # MQTT-3.3.2-20
    assert "topic_alias" not in m.props and "message_expiry" not in m.props
    s.send(ack(PUBACK, m.pid))
    s.close()
    p.close()


def test_publish_without_properties_forwarded_without_properties_MQTT_2_2_2_1(broker):
    s = v5_subscriber(broker, "noprops-sub", [("noprops/t", 0)])
    p, _ = v5_client(broker, "noprops-pub")
    p.send(publish("noprops/t", b"bare", version=5))
    m = s.expect(PUBLISH)
    # Topic, then a Property Length of zero, then the payload.
    assert m.body == b"\x00\x09noprops/t" + b"\x00" + b"bare"
    s.close()
    p.close()


def test_message_expiry_interval_forwarded_reduced_MQTT_3_3_2_6(broker):
    s, _ = v5_client(broker, "mx-sub", clean=False, properties=[("session_expiry", 60)])
    s.send(subscribe(1, [("mx/t", sub_opts(1))], version=5))
    s.expect(SUBACK)
    s.close()
    p, _ = v5_client(broker, "mx-pub")
    p.send(publish("mx/t", b"m", qos=1, pid=1, version=5, properties=[("message_expiry", 100)]))
    p.expect(PUBACK)
    s, ca = v5_client(broker, "mx-sub", clean=False, properties=[("session_expiry", 60)])
    assert ca.session_present
    m = s.expect(PUBLISH)
    assert m.payload == b"m"
    assert 90 <= m.props.get("message_expiry", -1) <= 100, m.props
    s.close()
    p.close()


def test_expired_message_not_delivered_MQTT_3_3_2_5(broker):
    s, _ = v5_client(broker, "mxe-sub", clean=False, properties=[("session_expiry", 60)])
    s.send(subscribe(1, [("mxe/t", sub_opts(1))], version=5))
    s.expect(SUBACK)
    s.close()
    p, _ = v5_client(broker, "mxe-pub")
    p.send(publish("mxe/t", b"short", qos=1, pid=1, version=5,
                   properties=[("message_expiry", 1)]))
    p.send(publish("mxe/t", b"long", qos=1, pid=2, version=5,
                   properties=[("message_expiry", 100)]))
    p.expect(PUBACK)
    p.expect(PUBACK)
    # No broker event marks a message's expiry; 2.2 s is certain to exceed a
    # 1 s interval even on a whole-second clock.
    time.sleep(2.2)
    s, ca = v5_client(broker, "mxe-sub", clean=False, properties=[("session_expiry", 60)])
    assert ca.session_present
    got = [m for m in drain(s, 0.5) if m.type == PUBLISH]
    assert [m.payload for m in got] == [b"long"], got
    assert got[0].props["message_expiry"] <= 98
    s.close()
    p.close()


# --- Topic Alias from the client ------------------------------------------------

def test_topic_alias_from_client_set_use_and_remap_MQTT_3_3_2_12(broker):
    s = v5_subscriber(broker, "ta-sub", [("ta/#", 0)])
    p, ca = v5_client(broker, "ta-pub")
    assert ca.props.get("topic_alias_maximum", 0) >= 2
    p.send(publish("ta/one", b"1", version=5, properties=[("topic_alias", 1)]))
    p.send(publish("", b"2", version=5, properties=[("topic_alias", 1)]))
    p.send(publish("ta/two", b"3", version=5, properties=[("topic_alias", 2)]))
    p.send(publish("ta/other", b"4", version=5, properties=[("topic_alias", 1)]))  # remap
    p.send(publish("", b"5", version=5, properties=[("topic_alias", 1)]))
    p.send(publish("", b"6", qos=1, pid=9, version=5, properties=[("topic_alias", 2)]))
    assert p.expect(PUBACK).pid == 9
    got = [(m.topic, m.payload) for m in (s.expect(PUBLISH) for _ in range(6))]
    assert got == [("ta/one", b"1"), ("ta/one", b"2"), ("ta/two", b"3"),
                   ("ta/other", b"4"), ("ta/other", b"5"), ("ta/two", b"6")]
    s.close()
    p.close()


def test_topic_alias_not_carried_to_next_connection_MQTT_3_3_2_7(broker):
    p, _ = v5_client(broker, "ta-carry")
    p.send(publish("carry/t", b"1", version=5, properties=[("topic_alias", 1)]))
    p.send(b"\xe0\x00")
    p.expect_closed()
    p, _ = v5_client(broker, "ta-carry")
    p.send(publish("", b"2", version=5, properties=[("topic_alias", 1)]))
    _closed_with(p, 0x82)


def test_topic_alias_above_maximum_disconnect_0x94_MQTT_3_3_2_9(broker):
    p, ca = v5_client(broker, "ta-max")
    top = ca.props.get("topic_alias_maximum", 0)
    p.send(publish("tamax/t", b"x", version=5, properties=[("topic_alias", top + 1)]))
    _closed_with(p, 0x94)


def test_topic_alias_zero_closes_connection_MQTT_3_3_2_8(broker):
    p, _ = v5_client(broker, "ta-zero")
    p.send(publish("tazero/t", b"x", version=5, properties=[("topic_alias", 0)]))
    got = p.expect_closed()
    assert all(m.type == DISCONNECT and m.reason in (0x81, 0x82, 0x94) for m in got), got


@pytest.mark.hato_only("mosquitto 2.0.11 reports Topic Alias 0 as 0x81 malformed, not 0x94")
def test_topic_alias_zero_is_error_0x94_MQTT_3_3_2_8(broker):
    p, _ = v5_client(broker, "ta-zero2")
    p.send(publish("tazero/t", b"x", version=5, properties=[("topic_alias", 0)]))
    _closed_with(p, 0x94)


def test_empty_topic_with_unknown_alias_protocol_error_3_3_2_3_4(broker):
    p, _ = v5_client(broker, "ta-unknown")
    p.send(publish("", b"x", version=5, properties=[("topic_alias", 3)]))
    _closed_with(p, 0x82)


def test_empty_topic_without_alias_protocol_error_3_3_2_1(broker):
    p, _ = v5_client(broker, "ta-none")
    p.send(publish("", b"x", version=5))
    _closed_with(p, 0x82)


def test_other_clients_unaffected_by_alias_error_MQTT_4_13_1_1(broker):
    s = v5_subscriber(broker, "ta-bystander", [("bystand/t", 0)])
    bad, _ = v5_client(broker, "ta-bad")
    bad.send(publish("", b"x", version=5, properties=[("topic_alias", 1)]))
    bad.expect_closed()
    p, _ = v5_client(broker, "ta-good")
    p.send(publish("bystand/t", b"still-here", version=5))
    assert s.expect(PUBLISH).payload == b"still-here"
    s.close()
    p.close()


# --- Topic Alias toward the client ----------------------------------------------

def test_no_topic_alias_to_client_without_maximum_MQTT_3_1_2_27(broker):
    s = v5_subscriber(broker, "tao-none", [("tao/#", 0)])
    p, _ = v5_client(broker, "tao-none-pub")
    for i in range(3):
        p.send(publish("tao/same", b"%d" % i, version=5, properties=[("topic_alias", 1)]
                       if i == 0 else []))
    for i in range(3):
        m = s.expect(PUBLISH)
        assert m.topic == "tao/same" and "topic_alias" not in m.props, m
    s.close()
    p.close()


def test_topic_alias_to_client_within_its_maximum_MQTT_3_1_2_26_MQTT_3_3_2_11(broker):
    # The client accepts aliases 1..2; whatever the broker does with them,
    # every alias it sends must be in range and every message must resolve to
    # its true topic under the mapping the broker itself established.
    s, _ = v5_client(broker, "tao-two", properties=[("topic_alias_maximum", 2)])
    s.send(subscribe(1, [("tao2/#", 0)], version=5))
    s.expect(SUBACK)
    p, _ = v5_client(broker, "tao-two-pub")
    sent = [f"tao2/topic/{i % 4}" for i in range(12)]
    for i, t in enumerate(sent):
        p.send(publish(t, b"%d" % i, version=5))
    mapping = {}
    for i, t in enumerate(sent):
        m = s.expect(PUBLISH)
        alias = m.props.get("topic_alias")
        if alias is not None:
            assert 1 <= alias <= 2, f"alias {alias} beyond the client's maximum"
            if m.topic:
                mapping[alias] = m.topic
            else:
                assert alias in mapping, "empty topic with an alias never established"
        topic = m.topic or mapping[alias]
        assert (topic, m.payload) == (t, b"%d" % i)
    s.close()
    p.close()


# --- Receive Maximum -------------------------------------------------------------

def _flood(broker, topic, n, cid):
    p, _ = v5_client(broker, cid)
    for i in range(n):
        p.send(publish(topic, b"%d" % i, qos=1, pid=i + 1, version=5))
    for _ in range(n):
        p.expect(PUBACK)
    return p


def test_receive_maximum_of_client_limits_inflight_MQTT_3_3_4_9(broker):
    s, _ = v5_client(broker, "rm-sub", properties=[("receive_maximum", 2)])
    s.send(subscribe(1, [("rm/t", sub_opts(1))], version=5))
    s.expect(SUBACK)
    p = _flood(broker, "rm/t", 5, "rm-pub")
    first = drain(s, 0.5)
    assert [m.payload for m in first] == [b"0", b"1"], first
    # Once acknowledged, the rest follows, in order (MQTT-4.6.0-6).
    got = list(first)
    deadline = time.monotonic() + 4
    acked = 0
    while len(got) < 5 and time.monotonic() < deadline:
        while acked < len(got):
            s.send(ack(PUBACK, got[acked].pid))
            acked += 1
        got.append(s.expect(PUBLISH))
    assert [m.payload for m in got] == [b"0", b"1", b"2", b"3", b"4"]
    s.close()
    p.close()


@pytest.mark.hato_only("mosquitto 2.0.11 sends two queued messages per PUBACK, "
                       "exceeding the client's Receive Maximum")
def test_receive_maximum_of_client_never_exceeded_MQTT_3_3_4_9(broker):
    s, _ = v5_client(broker, "rm2-sub", properties=[("receive_maximum", 2)])
    s.send(subscribe(1, [("rm2/t", sub_opts(1))], version=5))
    s.expect(SUBACK)
    p = _flood(broker, "rm2/t", 6, "rm2-pub")
    inflight = [m.pid for m in drain(s, 0.5)]
    assert len(inflight) == 2
    done = 0
    while inflight:
        s.send(ack(PUBACK, inflight.pop(0)))
        done += 1
        more = [m.pid for m in drain(s, 0.3)]
        inflight += more
        assert len(inflight) <= 2, f"{len(inflight)} unacknowledged PUBLISH in flight"
    assert done == 6
    s.close()
    p.close()


@pytest.mark.hato_only("mosquitto 2.0.11 answers PUBREC 0x97 instead of DISCONNECT 0x93")
def test_client_exceeding_receive_maximum_disconnect_0x93_MQTT_3_3_4_7(broker_factory):
    b = broker_factory("max_inflight_messages 3\n")
    c, ca = v5_client(b, "rm-exceed")
    assert ca.props.get("receive_maximum") == 3
    # QoS 2 publishes stay unacknowledged (no PUBREL) and count against it.
    for i in range(4):
        c.send(publish("rmx/t", b"x", qos=2, pid=i + 1, version=5))
    got = c.expect_closed()
    assert [(m.type, m.pid) for m in got[:3]] == [(PUBREC, 1), (PUBREC, 2), (PUBREC, 3)], got
    assert [(m.type, m.reason) for m in got[3:]] == [(DISCONNECT, 0x93)], got


# --- Maximum Packet Size of the client --------------------------------------------

def test_message_over_client_maximum_packet_size_dropped_MQTT_3_1_2_24_MQTT_3_1_2_25(broker):
    s, _ = v5_client(broker, "mps-sub", properties=[("maximum_packet_size", 64)])
    s.send(subscribe(1, [("mps/t", sub_opts(1))], version=5))
    s.expect(SUBACK)
    p, _ = v5_client(broker, "mps-pub")
    p.send(publish("mps/t", b"B" * 100, qos=1, pid=1, version=5))
    p.send(publish("mps/t", b"small", qos=1, pid=2, version=5))
    assert [p.expect(PUBACK).pid for _ in range(2)] == [1, 2]
    m = s.expect(PUBLISH)
    assert m.payload == b"small"
    assert len(m.body) + 2 <= 64
    # The dropped one was treated as delivered: nothing is left in flight.
    s.send(ack(PUBACK, m.pid))
    s.expect_nothing(0.3)
    s.close()
    p.close()


# --- Reason codes ------------------------------------------------------------------

def test_puback_no_matching_subscribers_0x10_3_4_2_1(broker):
    p, _ = v5_client(broker, "nomatch")
    p.send(publish("nomatch/t", b"x", qos=1, pid=1, version=5))
    assert p.expect(PUBACK).reason == 0x10
    s = v5_subscriber(broker, "nomatch-sub", [("nomatch/t", 0)])
    p.send(publish("nomatch/t", b"x", qos=1, pid=2, version=5))
    assert p.expect(PUBACK).reason == 0x00
    s.close()
    p.close()


@pytest.mark.hato_only("mosquitto 2.0.11 answers PUBREC 0x00 when nobody is subscribed")
def test_pubrec_success_without_subscribers_as_mosquitto(broker):
    """PUBREC is written before the message is routed (Mosquitto's order), so
    it says Success (0x00) even with no subscriber, as Mosquitto 2.0 does;
    0x10 is allowed (3.5.2.1), not required. PUBACK still says 0x10."""
    p, _ = v5_client(broker, "nomatch2")
    p.send(publish("nomatch2/t", b"x", qos=2, pid=1, version=5))
    r = p.expect(PUBREC)
    assert (r.pid, r.reason, len(r.body)) == (1, 0x00, 2)
    p.send(ack(PUBREL, 1))
    assert p.expect(PUBCOMP).reason == 0x00
    p.close()


def test_qos2_exactly_once_v5_MQTT_4_3_3(broker):
    s = v5_subscriber(broker, "q2-sub", [("q2/t", sub_opts(2))])
    p, _ = v5_client(broker, "q2-pub")
    p.send(publish("q2/t", b"once", qos=2, pid=5, version=5))
    r = p.expect(PUBREC)
    assert (r.pid, r.reason) == (5, 0x00)
    p.send(publish("q2/t", b"once", qos=2, pid=5, dup=True, version=5))  # retransmission
    assert p.expect(PUBREC).pid == 5
    p.send(ack(PUBREL, 5))
    c = p.expect(PUBCOMP)
    assert (c.pid, c.reason) == (5, 0x00)
    m = s.expect(PUBLISH)
    assert (m.payload, m.qos, m.dup) == (b"once", 2, False)
    s.send(ack(PUBREC, m.pid, 0x00))
    rel = s.expect(PUBREL)
    assert rel.pid == m.pid and rel.flags == 2 and rel.reason == 0x00
    s.send(ack(PUBCOMP, m.pid))
    s.expect_nothing(0.3)  # exactly once
    s.close()
    p.close()


def test_pubrec_error_reason_ends_qos2_flow_4_3_3(broker):
    # A PUBREC with a reason code >= 0x80 completes the exchange: the
    # broker must not send PUBREL for it.
    s = v5_subscriber(broker, "q2e-sub", [("q2e/t", sub_opts(2))])
    p, _ = v5_client(broker, "q2e-pub")
    p.send(publish("q2e/t", b"x", qos=2, pid=1, version=5))
    p.expect(PUBREC)
    p.send(ack(PUBREL, 1))
    p.expect(PUBCOMP)
    m = s.expect(PUBLISH)
    s.send(ack(PUBREC, m.pid, 0x80))
    s.expect_nothing(0.3)
    s.close()
    p.close()


@pytest.mark.hato_only("mosquitto 2.0.11 answers PUBCOMP 0x00 for an unknown packet id")
def test_pubrel_unknown_packet_id_pubcomp_0x92_3_7_2_1(broker):
    p, _ = v5_client(broker, "relunknown")
    p.send(ack(PUBREL, 4242))
    c = p.expect(PUBCOMP)
    assert (c.pid, c.reason) == (4242, 0x92)
    p.close()


@pytest.mark.hato_only("mosquitto 2.0.11 does not validate Payload Format Indicator 1 payloads")
def test_payload_format_utf8_invalid_payload_rejected_3_3_2_3_2(broker):
    s = v5_subscriber(broker, "pfi-sub", [("pfi/t", 0)])
    p, _ = v5_client(broker, "pfi-pub")
    p.send(publish("pfi/t", b"\xff\xfe", qos=1, pid=1, version=5,
                   properties=[("payload_format", 1)]))
    r = p.recv()
    # PUBACK 0x99 or DISCONNECT 0x99 are both what the spec allows.
    assert r.type in (PUBACK, DISCONNECT) and r.reason == 0x99, r
    s.expect_nothing(0.3)
    s.close()
    p.close()


@pytest.mark.hato_only("mosquitto 2.0.11 ignores a Subscription Identifier sent in PUBLISH")
def test_publish_with_subscription_identifier_protocol_error_MQTT_3_3_4_6(broker):
    p, _ = v5_client(broker, "pubsid")
    p.send(publish("pubsid/t", b"x", version=5, properties=[("subscription_id", 1)]))
    _closed_with(p, 0x82)


@pytest.mark.hato_only("mosquitto 2.0.11 accepts a Response Topic with wildcards")
def test_response_topic_with_wildcard_protocol_error_MQTT_3_3_2_14(broker):
    p, _ = v5_client(broker, "respwild")
    p.send(publish("respwild/t", b"x", version=5, properties=[("response_topic", "r/#")]))
    _closed_with(p, 0x82)


def test_publish_topic_with_wildcard_rejected_MQTT_3_3_2_2(broker):
    # A Protocol Error (0x82); 0x90 Topic Name invalid is also a fitting code.
    p, _ = v5_client(broker, "pubwild")
    p.send(publish("pub/+/wild", b"x", version=5))
    got = p.expect_closed()
    assert [(m.type, m.reason in (0x82, 0x90)) for m in got] == [(DISCONNECT, True)], got
