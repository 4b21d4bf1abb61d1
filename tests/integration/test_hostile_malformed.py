"""Malformed packets and protocol errors not covered elsewhere (issue 7).

test_v5_malformed.py, test_malformed_v3.py and test_connect.py already send
most rules of MQTT 5.0 section 4.13 and MQTT 3.1.1 section 4.8 as raw bytes;
the cases here fill the gaps. Each is sent on its own connection while a
bystander is subscribed: the offender is disconnected (MQTT 5: one
DISCONNECT with the reason code given, MQTT 3.1.1: closed without a word,
MQTT-4.8.0-1), nothing crashes (the broker's stop is checked for sanitizer
reports), and the bystander still receives.
"""

import struct

import pytest

from mqttraw import (DISCONNECT, PUBACK, PUBLISH, PUBREL, RawClient, ack, closed_by_broker,
                     connected_client, disconnect, packet, publish, subscribe, unsubscribe,
                     v5_client, v5_subscriber)

pytestmark = pytest.mark.hato_only("hato limits, log lines and reason codes")

M, P = 0x81, 0x82

V5_CASES = [
    # (id naming the rule, bytes, reason codes accepted)
    ("publish_empty_topic_without_alias_3_3_2_1", publish("", b"x", version=5), P),
    ("publish_alias_never_set_MQTT_3_3_2_12", publish("", b"x", version=5, properties=[
        ("topic_alias", 1)]), P),
    ("publish_subscription_id_from_client_MQTT_3_3_4_6", publish("t", b"x", version=5, properties=[
        ("subscription_id", 3)]), (M, P)),
    ("publish_response_topic_wildcard_MQTT_3_3_2_14", publish("t", b"x", version=5, properties=[
        ("response_topic", "a/#")]), (M, P)),
    ("publish_topic_wildcard_MQTT_3_3_2_2", publish("a/+", b"x", version=5), (0x90, M, P)),
    ("publish_payload_format_1_not_utf8_MQTT_3_3_2_4", publish("t", b"\xff\xfe", version=5,
        properties=[("payload_format", 1)]), (0x99,)),
    ("publish_maximum_packet_size_property_2_2_2_2", publish("t", b"x", version=5, properties=[
        ("maximum_packet_size", 5)]), M),
    ("publish_over_max_topic_levels_hato", publish("/".join("l" * 202), b"x", version=5), 0x82),
    ("puback_unknown_reason_code_3_4_2_1", ack(PUBACK, 1, reason=0x05), M),
    ("pubrel_unknown_reason_code_3_6_2_1", ack(PUBREL, 1, reason=0x05), M),
    ("disconnect_unknown_reason_code_3_14_2_1", disconnect(0x05), M),
    ("disconnect_reserved_flags_MQTT_2_1_3_1", b"\xe1\x00", M),
    ("subscribe_packet_id_0_MQTT_2_2_1_3", subscribe(0, [("a", 0)], version=5), P),
    ("unsubscribe_packet_id_0_MQTT_2_2_1_3", unsubscribe(0, ["a"], version=5), P),
    ("subscribe_shared_no_local_MQTT_3_8_3_4", subscribe(1, [("$share/g/t", 0x04)], version=5), P),
    ("subscribe_share_name_wildcard_MQTT_4_8_2_2", subscribe(1, [("$share/a+b/t", 0)], version=5),
     (0x8F, M, P)),
    ("subscribe_share_without_filter_MQTT_4_8_2_1", subscribe(1, [("$share/g", 0)], version=5),
     (0x8F, M, P)),
    ("subscribe_hash_not_last_MQTT_4_7_1_2", subscribe(1, [("a/#/b", 0)], version=5),
     (0x8F, M, P)),
    ("connack_from_client_3_2", packet(2, 0, b"\x00\x00\x00"), P),
    ("suback_from_client_3_9", packet(9, 0, b"\x00\x01\x00\x00"), P),
    ("pingresp_from_client_3_13", b"\xd0\x00", P),
    ("non_minimal_remaining_length_MQTT_1_5_5_1", b"\xc0\x80\x00", M),
]

V3_CASES = [
    ("disconnect_with_body_MQTT_4_8_0_1", b"\xe0\x01\x00"),
    ("pingreq_with_body_MQTT_4_8_0_1", b"\xc0\x01\x00"),
    ("publish_topic_wildcard_MQTT_3_3_2_2", publish("a/#", b"x")),
    ("subscribe_bad_filter_MQTT_4_7_1_2", subscribe(1, [("a/b#", 0)])),
    ("unsubscribe_bad_filter_MQTT_4_7_1_3", unsubscribe(1, ["a/+b"])),
    ("puback_extra_bytes_MQTT_4_8_0_1", packet(4, 0, b"\x00\x01\x00")),
    ("connack_from_client_MQTT_4_8_0_1", packet(2, 0, b"\x00\x00")),
    ("reserved_type_15_MQTT_2_2_1", packet(15, 0, b"")),
    ("publish_dup_on_qos0_MQTT_3_3_1_2", publish("t", b"x", dup=True)),
    ("publish_over_max_topic_levels_hato", publish("/".join("l" * 202), b"x")),
    ("unsubscribe_empty_filter_MQTT_4_7_3_1", unsubscribe(1, [""])),
    ("subscribe_filter_overlong_utf8_MQTT_1_5_3_1", subscribe(1, [(b"\xc0\x80", 0)])),
]


def _bystander_ok(broker, watcher, tag):
    pub = connected_client(broker, "bystander-pub-" + tag)
    pub.send(publish("bystander/t", b"alive-" + tag.encode()))
    assert watcher.expect(PUBLISH).payload == b"alive-" + tag.encode()
    pub.close()


@pytest.mark.parametrize("name,data,codes", V5_CASES, ids=[c[0] for c in V5_CASES])
def test_v5_offender_disconnected_with_reason_bystander_unaffected(broker, name, data, codes):
    codes = (codes,) if isinstance(codes, int) else codes
    watcher = v5_subscriber(broker, "bystander", [("bystander/t", 0)])
    c, _ = v5_client(broker, "offender")
    c.send(data)
    got = closed_by_broker(c)
    assert len(got) == 1 and got[0].type == DISCONNECT, f"{name}: got {got!r}"
    assert got[0].reason in codes, f"{name}: reason {got[0].reason:#x} not in {codes}"
    _bystander_ok(broker, watcher, "5")


@pytest.mark.parametrize("name,data", V3_CASES, ids=[c[0] for c in V3_CASES])
def test_v311_offender_closed_silently_bystander_unaffected_MQTT_4_8_0_1(broker, name, data):
    watcher = connected_client(broker, "bystander")
    watcher.send(subscribe(1, [("bystander/t", 0)]))
    watcher.expect(9)
    c = connected_client(broker, "offender")
    c.send(data)
    assert closed_by_broker(c) == [], name
    _bystander_ok(broker, watcher, "3")


def test_v311_non_minimal_remaining_length_accepted(broker):
    """MQTT 3.1.1 (2.2.3) has no minimum-length rule and Mosquitto accepts a
    padded Remaining Length: hato does too (MQTT 5 refuses it, above)."""
    c = connected_client(broker, "pad3")
    body = struct.pack("!H", 1) + b"t" + b"x"
    c.send(subscribe(1, [("t", 0)]))
    c.expect(9)
    c.send(bytes([0x30, 0x84, 0x80, 0x00]) + body)
    assert c.expect(PUBLISH).payload == b"x"


def test_garbage_stream_before_connect_closed(broker):
    """Random-looking bytes instead of a CONNECT: closed without a CONNACK."""
    c = RawClient(broker)
    c.send(bytes(range(256)) * 4)
    assert closed_by_broker(c) == []


def test_byte_order_mark_is_part_of_the_topic_MQTT_1_5_3_3(broker):
    """U+FEFF at the start of a topic is a character like any other: it is
    neither skipped nor stripped (MQTT-1.5.3-3), so it matches a filter with
    it and not one without, and is delivered as sent."""
    bom = "\ufeffbom"
    with_bom = connected_client(broker, "with-bom")
    with_bom.send(subscribe(1, [(bom, 0)]))
    with_bom.expect(9)
    without = connected_client(broker, "without-bom")
    without.send(subscribe(1, [("bom", 0)]))
    without.expect(9)
    pub = connected_client(broker, "bom-pub")
    pub.send(publish(bom, b"x"))
    assert with_bom.expect(PUBLISH).topic == bom
    without.expect_nothing()
