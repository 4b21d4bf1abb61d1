"""SUBSCRIBE / UNSUBSCRIBE and topic matching for MQTT 3.1.1 (raw packets)."""

import struct

import pytest

from mqttraw import (PINGRESP, PUBLISH, SUBACK, SUBSCRIBE, UNSUBACK, UNSUBSCRIBE, ack,
                     connected_client, packet, pingreq, publish, publish_ok, s,
                     subscribe, subscribe_ok, unsubscribe)


def drain(c, limit=50, quiet=0.3):
    """All PUBLISHes until quiet for `quiet` seconds (acknowledged); bounded by limit."""
    got = []
    for _ in range(limit):
        try:
            p = c.recv(quiet)
        except TimeoutError:
            return got
        assert p.type == PUBLISH, p
        if p.qos == 1:
            c.send(ack(4, p.pid))
        elif p.qos == 2:
            c.send(ack(5, p.pid))
            rel = c.expect(6)
            c.send(ack(7, rel.pid))
        got.append(p)
    raise AssertionError(f"more than {limit} messages")


def sync(c):
    """PINGREQ/PINGRESP round trip: everything c sent before has been processed."""
    c.send(pingreq())
    c.expect(PINGRESP)


def matches(broker, filt, topics):
    """Subscribe to filt, publish each topic (payload = topic), return the set received."""
    with connected_client(broker, "m-sub") as sub, connected_client(broker, "m-pub") as pub:
        subscribe_ok(sub, 1, [(filt, 0)])
        for t in topics:
            pub.send(publish(t, t.encode()))
        sync(pub)
        return {p.topic for p in drain(sub)}


def test_suback_codes_in_order_exact_MQTT_3_8_4_1_5(broker):
    """SUBACK has the same packet id and one granted QoS per filter, in order (MQTT-3.8.4-1,
    MQTT-3.8.4-2, MQTT-3.8.4-5, MQTT-3.9.3-1)."""
    with connected_client(broker, "s") as c:
        c.send(subscribe(0xBEEF, [("a/2", 2), ("a/0", 0), ("a/1", 1)]))
        p = c.expect(SUBACK)
        assert p.flags == 0
        assert p.body == b"\xbe\xef\x02\x00\x01"


def test_plus_wildcard_MQTT_4_7_1_3(broker):
    """'+' matches exactly one level, including an empty one (MQTT-4.7.1-3 examples)."""
    got = matches(broker, "a/+/c", ["a/b/c", "a//c", "a/b/d", "a/b/c/d", "a/c", "x/b/c"])
    assert got == {"a/b/c", "a//c"}


def test_plus_examples_leading_slash_MQTT_4_7_1_3(broker):
    """'+' does not match '/finance', '+/+' and '/+' do (section 4.7.1.3 examples)."""
    assert matches(broker, "+", ["/finance", "finance"]) == {"finance"}
    assert matches(broker, "+/+", ["/finance", "finance"]) == {"/finance"}
    assert matches(broker, "/+", ["/finance", "finance"]) == {"/finance"}


def test_hash_wildcard_matches_parent_MQTT_4_7_1_2(broker):
    """'a/#' matches 'a' itself and every level below, not 'ab' (MQTT-4.7.1-2 and 4.7.1.2 example)."""
    got = matches(broker, "sport/tennis/player1/#",
                  ["sport/tennis/player1", "sport/tennis/player1/ranking",
                   "sport/tennis/player1/score/wimbledon", "sport/tennis/player2",
                   "sport/tennis/player10"])
    assert got == {"sport/tennis/player1", "sport/tennis/player1/ranking",
                   "sport/tennis/player1/score/wimbledon"}


def test_hash_alone_matches_all_MQTT_4_7_1_2(broker):
    """'#' alone matches every topic not starting with '$'."""
    got = matches(broker, "#", ["a", "a/b", "/x", "a//b/", "$dollar/x"])
    assert got == {"a", "a/b", "/x", "a//b/"}


def test_dollar_topics_not_matched_by_leading_wildcards_MQTT_4_7_2_1(broker):
    """Filters starting with a wildcard do not match topics starting with '$'; '$test/#' does
    (MQTT-4.7.2-1)."""
    with connected_client(broker, "hash") as h, connected_client(broker, "plus") as p, \
            connected_client(broker, "dollar") as d, connected_client(broker, "pub") as pub:
        subscribe_ok(h, 1, [("#", 0)])
        subscribe_ok(p, 1, [("+/x", 0)])
        subscribe_ok(d, 1, [("$test/#", 0)])
        pub.send(publish("$test/x", b"dollar"))
        pub.send(publish("norm/x", b"normal"))
        sync(pub)
        assert [m.payload for m in drain(d)] == [b"dollar"]
        assert [m.payload for m in drain(h)] == [b"normal"]
        assert [m.payload for m in drain(p)] == [b"normal"]


def test_overlapping_subscriptions_one_copy_max_qos_MQTT_3_3_5_1(broker):
    """A message matching several of a client's filters is delivered once, with the maximum QoS
    of the matching subscriptions (MQTT-3.3.5-1)."""
    with connected_client(broker, "ov") as sub, connected_client(broker, "pub") as pub:
        assert subscribe_ok(sub, 1, [("ov/#", 0), ("ov/+", 1), ("ov/t", 2)]).codes == [0, 1, 2]
        publish_ok(pub, "ov/t", b"m", qos=2, pid=1)
        got = drain(sub)
        assert len(got) == 1, got
        assert got[0].qos == 2


def test_overlapping_subscriptions_qos_is_max_MQTT_3_3_5_1(broker):
    """Whatever the number of copies, no copy is delivered above the published QoS and at least one
    has the highest granted QoS (MQTT-3.3.5-1, MQTT-3.8.4-6)."""
    with connected_client(broker, "ov2") as sub, connected_client(broker, "pub") as pub:
        subscribe_ok(sub, 1, [("ov2/#", 0), ("ov2/t", 1)])
        publish_ok(pub, "ov2/t", b"m", qos=2, pid=1)
        got = drain(sub)
        assert got and max(p.qos for p in got) == 1, got


def test_resubscribe_replaces_subscription_MQTT_3_8_4_3(broker):
    """Subscribing again to an identical filter replaces the subscription (new QoS), giving one
    copy (MQTT-3.8.4-3)."""
    with connected_client(broker, "re") as sub, connected_client(broker, "pub") as pub:
        assert subscribe_ok(sub, 1, [("re/t", 0)]).codes == [0]
        assert subscribe_ok(sub, 2, [("re/t", 2)]).codes == [2]
        publish_ok(pub, "re/t", b"m", qos=2, pid=1)
        got = drain(sub)
        assert len(got) == 1 and got[0].qos == 2, got
        # and downgrading works the same way
        assert subscribe_ok(sub, 3, [("re/t", 0)]).codes == [0]
        publish_ok(pub, "re/t", b"n", qos=2, pid=2)
        got = drain(sub)
        assert len(got) == 1 and got[0].qos == 0, got


@pytest.mark.parametrize("filt", ["a/#/b", "a#", "a/b#", "a+", "a/+b", "+a/b", "##", ""],
                         ids=["hash-middle", "a-hash", "ab-hash", "a-plus", "plus-b", "plus-a",
                              "double-hash", "empty"])
def test_invalid_filter_closes_MQTT_4_7_1_2_3(broker, filt):
    """Malformed filters ('#' not last or not alone in its level, '+' not alone, empty) close the
    connection: 3.1.1 has no failure code for syntax errors (MQTT-4.7.1-2, MQTT-4.7.1-3,
    MQTT-4.7.3-1, MQTT-4.8.0-1)."""
    with connected_client(broker, "bad") as c:
        c.send(subscribe(1, [(filt, 0)]))
        got = c.expect_closed(3)
        assert not any(p.type == SUBACK and p.codes != [0x80] for p in got), got


def test_subscribe_without_filters_closes_MQTT_3_8_3_3(broker):
    """A SUBSCRIBE with no topic filter is a protocol violation (MQTT-3.8.3-3)."""
    with connected_client(broker, "nofilt") as c:
        c.send(packet(SUBSCRIBE, 2, b"\x00\x01"))
        assert c.expect_closed(3) == []


@pytest.mark.parametrize("flags", [0, 1, 3, 8])
def test_subscribe_bad_fixed_header_flags_closes_MQTT_3_8_1_1(broker, flags):
    """SUBSCRIBE fixed header flags must be 0010 (MQTT-3.8.1-1, MQTT-2.2.2-2)."""
    with connected_client(broker, "flags") as c:
        c.send(packet(SUBSCRIBE, flags, b"\x00\x01" + s("a/b") + b"\x00"))
        assert c.expect_closed(3) == []


def test_subscribe_requested_qos_reserved_bits_closes_MQTT_3_8_3_4(broker):
    """Requested QoS byte with reserved bits set, or QoS 3, is malformed (MQTT-3.8.3-4)."""
    for opts in (0x03, 0x04):
        with connected_client(broker, "qosbits") as c:
            c.send(packet(SUBSCRIBE, 2, b"\x00\x01" + s("a/b") + bytes([opts])))
            assert c.expect_closed(3) == []


def test_subscribe_packet_id_zero_closes_MQTT_2_3_1_1(broker):
    """SUBSCRIBE must carry a non-zero packet id (MQTT-2.3.1-1)."""
    with connected_client(broker, "pid0") as c:
        c.send(subscribe(0, [("a/b", 0)]))
        assert c.expect_closed(3) == []


def test_subscribe_filter_nul_closes_MQTT_1_5_3_2(broker):
    """U+0000 in a Topic Filter closes the connection (MQTT-1.5.3-2)."""
    with connected_client(broker, "nulf") as c:
        c.send(packet(SUBSCRIBE, 2, b"\x00\x01" + s(b"a/\x00") + b"\x00"))
        assert c.expect_closed(3) == []


def test_unsubscribe_stops_delivery_exact_unsuback_MQTT_3_10_4_4(broker):
    """UNSUBSCRIBE stops delivery (MQTT-3.10.4-2) and is answered by UNSUBACK b0 02 <pid>
    (MQTT-3.10.4-4)."""
    with connected_client(broker, "un") as sub, connected_client(broker, "pub") as pub:
        subscribe_ok(sub, 1, [("un/a", 1), ("un/b", 1)])
        sub.send(unsubscribe(0x0102, ["un/a"]))
        p = sub.expect(UNSUBACK)
        assert p.flags == 0 and p.body == b"\x01\x02"
        publish_ok(pub, "un/a", b"gone", qos=1, pid=1)
        publish_ok(pub, "un/b", b"kept", qos=1, pid=2)
        assert [m.payload for m in drain(sub)] == [b"kept"]


def test_unsuback_even_without_subscription_MQTT_3_10_4_5(broker):
    """UNSUBSCRIBE for filters that match no subscription still gets UNSUBACK (MQTT-3.10.4-5)."""
    with connected_client(broker, "un2") as c:
        c.send(unsubscribe(77, ["never/subscribed", "x/#"]))
        p = c.expect(UNSUBACK)
        assert p.body == struct.pack("!H", 77)


def test_unsubscribe_compares_filters_literally_MQTT_3_10_4_1(broker):
    """Unsubscribing 'lit/b' does not remove the 'lit/+' subscription (MQTT-3.10.4-1)."""
    with connected_client(broker, "lit") as sub, connected_client(broker, "pub") as pub:
        subscribe_ok(sub, 1, [("lit/+", 0)])
        sub.send(unsubscribe(2, ["lit/b"]))
        sub.expect(UNSUBACK)
        pub.send(publish("lit/b", b"still"))
        sync(pub)
        assert [m.payload for m in drain(sub)] == [b"still"]


def test_unsubscribe_without_filters_closes_MQTT_3_10_3_2(broker):
    """An UNSUBSCRIBE with no topic filter is a protocol violation (MQTT-3.10.3-2)."""
    with connected_client(broker, "unnone") as c:
        c.send(packet(UNSUBSCRIBE, 2, b"\x00\x05"))
        assert c.expect_closed(3) == []


def test_unsubscribe_bad_flags_closes_MQTT_3_10_1_1(broker):
    """UNSUBSCRIBE fixed header flags must be 0010 (MQTT-3.10.1-1)."""
    with connected_client(broker, "unflags") as c:
        c.send(packet(UNSUBSCRIBE, 0, b"\x00\x05" + s("a/b")))
        assert c.expect_closed(3) == []


def test_own_messages_delivered_MQTT_3_8_4_6(broker):
    """In 3.1.1 a client receives its own publications on topics it subscribes to."""
    with connected_client(broker, "self") as c:
        subscribe_ok(c, 1, [("self/t", 1)])
        c.send(publish("self/t", b"me", qos=1, pid=3))
        got = [c.recv(), c.recv()]
        pubs = [p for p in got if p.type == PUBLISH]
        assert len(pubs) == 1 and pubs[0].payload == b"me", got
        assert any(p.type == 4 and p.pid == 3 for p in got), got


def test_topic_matching_is_case_sensitive_MQTT_4_7_3_2(broker):
    """Topic names and filters are case sensitive (section 4.7.3)."""
    assert matches(broker, "Case/T", ["case/t", "Case/T", "CASE/T"]) == {"Case/T"}


def test_shared_subscription_balanced_v311(broker):
    """'$share/group/topic' from 3.1.1 clients: each message goes to exactly one member of the
    group, and both members get some."""
    with connected_client(broker, "m1") as m1, connected_client(broker, "m2") as m2, \
            connected_client(broker, "pub") as pub:
        subscribe_ok(m1, 1, [("$share/g/sh/t", 1)])
        subscribe_ok(m2, 1, [("$share/g/sh/t", 1)])
        for i in range(10):
            publish_ok(pub, "sh/t", b"%d" % i, qos=1, pid=i + 1)
        pa, pb = drain(m1), drain(m2)
        assert all(p.topic == "sh/t" for p in pa + pb)
        a, b = [p.payload for p in pa], [p.payload for p in pb]
        assert sorted(a + b, key=int) == [b"%d" % i for i in range(10)]
        assert a and b, (a, b)


def test_subscribe_many_filters_one_packet_MQTT_3_8_4_5(broker):
    """A SUBSCRIBE with 20 filters gets 20 return codes in order and all subscriptions work."""
    filters = [(f"many/{i}", i % 3) for i in range(20)]
    with connected_client(broker, "many") as sub, connected_client(broker, "pub") as pub:
        assert subscribe_ok(sub, 9, filters).codes == [q for _, q in filters]
        for i in range(20):
            pub.send(publish(f"many/{i}", b"x"))
        sync(pub)
        assert sorted(p.topic for p in drain(sub)) == sorted(f for f, _ in filters)
        sub.send(pingreq())
        sub.expect(PINGRESP)
