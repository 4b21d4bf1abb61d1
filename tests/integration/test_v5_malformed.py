"""MQTT 5.0 Malformed Packets and Protocol Errors (section 4.13).

Every case is sent on its own connection while a bystander client is
subscribed. Two tests per case:

* test_bad_packet_closes_connection: the broker closes the connection
  (MQTT-4.13.1-1); anything it sent first is a CONNACK (CONNECT errors, a
  MAY) or DISCONNECT (later errors) carrying an acceptable reason code; the
  bystander is unaffected.
* test_bad_packet_disconnect_reason_code: for errors after CONNECT, the
  broker sends exactly one DISCONNECT with the reason code the spec names
  ("SHOULD send a DISCONNECT ... before closing", 4.13.1). hato does; where
  mosquitto 2.0.11 does not, the case is hato_only.

Reason codes: 0x81 Malformed Packet when the packet cannot be parsed per the
spec (wrong property for the packet, bad UTF-8, reserved bits, lengths);
0x82 Protocol Error where the spec says "It is a Protocol Error" (duplicate
property, a forbidden value such as Receive Maximum 0, ...).
"""

import struct

import pytest

from mqttraw import (AUTH, CONNACK, CONNECT, DISCONNECT, PUBACK, PUBLISH, PUBREL, SUBSCRIBE,
                     UNSUBSCRIBE, RawClient, connect, packet, publish, s, subscribe,
                     unsubscribe, v5_client, v5_subscriber)

M, P = 0x81, 0x82
SILENT = "mosquitto 2.0.11 closes the connection without a DISCONNECT"
MOSQ_81 = "mosquitto 2.0.11 says 0x81 Malformed Packet where the spec says Protocol Error"
ACCEPTS = "mosquitto 2.0.11 accepts this packet"


def _connect_with(props_bytes, flags=0x02, payload=None):
    body = s("MQTT") + bytes([5, flags]) + struct.pack("!H", 60) + props_bytes
    return packet(CONNECT, 0, body + (payload if payload is not None else s("bad")))


class Case:
    def __init__(self, name, data, codes, alt=(), mosq=None, accepts=False):
        self.name = name
        self.data = data
        self.codes = (codes,) if isinstance(codes, int) else tuple(codes)
        self.alt = tuple(alt)      # further codes mosquitto uses (closing test only)
        self.mosq = mosq           # None: mosquitto sends exactly DISCONNECT <codes>
        self.accepts = accepts     # mosquitto does not even close


CONNECT_CASES = [
    Case("receive_maximum_0_3_1_2_11_3", connect("c", version=5, properties=[
        ("receive_maximum", 0)]), P),
    Case("duplicate_session_expiry_3_1_2_11_2", connect("c", version=5, properties=[
        ("session_expiry", 1), ("session_expiry", 2)]), P),
    Case("topic_alias_not_a_connect_property_2_2_2_2", connect("c", version=5, properties=[
        ("topic_alias", 1)]), M),
    Case("maximum_packet_size_0_3_1_2_11_4", connect("c", version=5, properties=[
        ("maximum_packet_size", 0)]), P),
    Case("request_problem_info_2_3_1_2_11_7", connect("c", version=5, properties=[
        ("request_problem_info", 2)]), P),
    Case("request_response_info_2_3_1_2_11_6", connect("c", version=5, properties=[
        ("request_response_info", 2)]), P),
    Case("property_length_beyond_packet_2_2_2_1", _connect_with(b"\x05\x11\x00\x00"), M),
    Case("unknown_property_id_2_2_2_2", _connect_with(b"\x02\x7f\x00"), M),
    Case("will_property_not_allowed_3_1_3_2", connect("c", version=5, will=dict(
        topic="w", payload=b"x", properties=[("topic_alias", 1)])), M),
    Case("will_topic_wildcard_MQTT_3_3_2_2", connect("c", version=5, will=dict(
        topic="w/#", payload=b"x")), (P, 0x90)),
    Case("user_property_invalid_utf8_MQTT_1_5_4_1", connect("c", version=5, properties=[
        ("user_property", (b"\xff\xfe", "v"))]), M),
    Case("reserved_connect_flag_MQTT_3_1_2_3", _connect_with(b"\x00", flags=0x03), M),
    Case("will_qos_without_will_flag_MQTT_3_1_2_11", _connect_with(b"\x00", flags=0x0A), M),
    Case("will_retain_without_will_flag_MQTT_3_1_2_13", _connect_with(b"\x00", flags=0x22), M),
    Case("auth_data_without_auth_method_3_1_2_11_10", connect("c", version=5, properties=[
        ("auth_data", b"x")]), P, accepts=True),
]

POST_CASES = [
    # PUBLISH
    Case("publish_duplicate_payload_format_3_3_2_3_2", publish("t", b"x", version=5, properties=[
        ("payload_format", 0), ("payload_format", 0)]), P, mosq=SILENT),
    Case("publish_session_expiry_not_allowed_2_2_2_2", publish("t", b"x", version=5, properties=[
        ("session_expiry", 5)]), M),
    Case("publish_property_length_overflow_2_2_2_1",
         packet(PUBLISH, 0, s("t") + b"\x20\x01\x00"), M),
    Case("publish_duplicate_topic_alias_3_3_2_3_4", publish("t", b"x", version=5, properties=[
        ("topic_alias", 1), ("topic_alias", 1)]), P, mosq=SILENT),
    Case("publish_qos_3_MQTT_3_3_1_4", packet(PUBLISH, 6, s("t") + b"\x00\x01\x00"), M),
    Case("publish_packet_id_0_MQTT_2_2_1_3", publish("t", b"x", qos=1, pid=0, version=5), P),
    Case("publish_topic_null_char_MQTT_1_5_4_2", publish("a\x00b", b"x", version=5), M),
    Case("publish_topic_invalid_utf8_MQTT_1_5_4_1", publish(b"\xc0\xaf", b"x", version=5), M),
    Case("publish_user_property_surrogate_MQTT_1_5_4_1", publish("t", b"x", version=5,
         properties=[("user_property", ("k", b"\xed\xa0\x80"))]), M, mosq=SILENT),
    Case("publish_content_type_null_char_MQTT_1_5_4_2", publish("t", b"x", version=5,
         properties=[("content_type", "a\x00b")]), M, mosq=SILENT),
    Case("publish_non_minimal_property_id_MQTT_1_5_5_1",
         packet(PUBLISH, 0, s("t") + b"\x03\x81\x00\x01" + b"x"), M),
    # SUBSCRIBE
    Case("subscribe_subscription_id_0_3_8_2_1_2", subscribe(1, [("a", 0)], version=5,
         properties=[("subscription_id", 0)]), P, alt=(M,), mosq=MOSQ_81),
    Case("subscribe_duplicate_subscription_id_3_8_2_1_2", subscribe(1, [("a", 0)], version=5,
         properties=[("subscription_id", 1), ("subscription_id", 2)]), P, mosq=SILENT),
    Case("subscribe_retain_handling_3_3_8_3_1", subscribe(1, [("a", 0x30)], version=5),
         P, alt=(M,), mosq=MOSQ_81),
    Case("subscribe_qos_3_3_8_3_1", subscribe(1, [("a", 3)], version=5),
         P, alt=(M,), mosq=MOSQ_81),
    Case("subscribe_reserved_option_bits_MQTT_3_8_3_5", subscribe(1, [("a", 0xC0)], version=5), M),
    Case("subscribe_no_topic_filter_MQTT_3_8_3_2", subscribe(1, [], version=5),
         P, alt=(M,), mosq=MOSQ_81),
    Case("subscribe_property_not_allowed_2_2_2_2", subscribe(1, [("a", 0)], version=5,
         properties=[("topic_alias", 1)]), M),
    Case("subscribe_fixed_header_flags_MQTT_3_8_1_1",
         packet(SUBSCRIBE, 0, struct.pack("!H", 1) + b"\x00" + s("a") + b"\x00"), M),
    Case("subscribe_filter_invalid_utf8_MQTT_1_5_4_1",
         subscribe(1, [(b"\xed\xa0\x80", 0)], version=5), M),
    # UNSUBSCRIBE
    Case("unsubscribe_property_not_allowed_2_2_2_2", unsubscribe(1, ["a"], version=5,
         properties=[("subscription_id", 1)]), M),
    Case("unsubscribe_no_topic_filter_MQTT_3_10_3_2", unsubscribe(1, [], version=5),
         P, alt=(M,), mosq=MOSQ_81),
    # Session / other packets
    Case("second_connect_MQTT_3_1_0_2", connect("again", version=5), P, mosq=SILENT),
    Case("auth_without_method_3_15", packet(AUTH, 0, b"\x18\x00"), P, mosq=SILENT),
    Case("reserved_packet_type_0_2_1_2", b"\x00\x00", (M, P)),
    Case("puback_reserved_flags_MQTT_2_1_3_1", packet(PUBACK, 1, b"\x00\x01"), M,
         accepts=True),
    Case("pingreq_reserved_flags_MQTT_2_1_3_1", b"\xc1\x00", M, accepts=True),
    Case("pubrel_reserved_flags_MQTT_3_6_1_1", packet(PUBREL, 0, b"\x00\x01"), M, mosq=SILENT),
]


def _param(case, strict):
    marks = []
    if case.accepts:
        marks.append(pytest.mark.hato_only(ACCEPTS))
    elif strict and case.mosq:
        marks.append(pytest.mark.hato_only(case.mosq))
    return pytest.param(case, id=case.name, marks=marks)


def _bystander(broker):
    return v5_subscriber(broker, "bystander", [("bystander/t", 0)])


def _bystander_ok(broker, watcher):
    p, _ = v5_client(broker, "bystander-pub")
    p.send(publish("bystander/t", b"alive", version=5))
    assert watcher.expect(PUBLISH).payload == b"alive"
    p.close()
    watcher.close()


@pytest.mark.parametrize("case", [_param(c, False) for c in CONNECT_CASES])
def test_bad_connect_closes_connection_MQTT_4_13_1_1_MQTT_3_1_4_1(broker, case):
    watcher = _bystander(broker)
    c = RawClient(broker, version=5)
    c.send(case.data)
    got = c.expect_closed()
    # A CONNACK is optional; if sent it carries the reason code and comes alone.
    assert len(got) <= 1, got
    for p in got:
        assert p.type == CONNACK and p.reason in case.codes + case.alt, p
        assert not p.session_present
    _bystander_ok(broker, watcher)


@pytest.mark.parametrize("case", [_param(c, False) for c in POST_CASES])
def test_bad_packet_closes_connection_MQTT_4_13_1_1(broker, case):
    watcher = _bystander(broker)
    c, _ = v5_client(broker, "offender")
    c.send(case.data)
    got = c.expect_closed()
    assert len(got) <= 1, got
    for p in got:
        assert p.type == DISCONNECT and p.reason in case.codes + case.alt, p
    _bystander_ok(broker, watcher)


@pytest.mark.parametrize("case", [_param(c, True) for c in POST_CASES])
def test_bad_packet_disconnect_reason_code_4_13_1(broker, case):
    c, _ = v5_client(broker, "offender-rc")
    c.send(case.data)
    got = c.expect_closed()
    assert len(got) == 1 and got[0].type == DISCONNECT, got
    assert got[0].reason in case.codes, f"DISCONNECT {got[0].reason:#x}, want {case.codes}"
    assert "session_expiry" not in got[0].props, "MQTT-3.14.2-2"
