"""MQTT 5.0 SUBSCRIBE / UNSUBSCRIBE: SUBACK and UNSUBACK reason codes,
Subscription Identifiers, No Local, Retain As Published, Retain Handling,
shared subscriptions.
"""

import pytest

from mqttraw import (DISCONNECT, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK, UNSUBACK, ack, drain, publish, subscribe,
                     sub_opts, unsubscribe, v5_client, v5_subscriber)


def test_suback_reason_codes_in_order_MQTT_3_9_3_1_MQTT_3_8_4_6(broker):
    c, _ = v5_client(broker, "suback")
    c.send(subscribe(17, [("sa/q0", sub_opts(0)), ("sa/q1", sub_opts(1)),
                          ("sa/q2", sub_opts(2)), ("sa/+/w", sub_opts(1))], version=5))
    a = c.expect(SUBACK)
    assert a.pid == 17
    assert a.codes == [0x00, 0x01, 0x02, 0x01]
    c.close()


def test_delivered_qos_is_minimum_of_granted_and_published_MQTT_3_8_4_8(broker):
    s = v5_subscriber(broker, "minqos-sub", [("minqos/t", sub_opts(1))])
    p, _ = v5_client(broker, "minqos-pub")
    p.send(publish("minqos/t", b"q2", qos=2, pid=1, version=5))
    p.expect(PUBREC)
    p.send(ack(PUBREL, 1))
    p.expect(PUBCOMP)
    m = s.expect(PUBLISH)
    assert m.qos == 1
    s.close()
    p.close()


@pytest.mark.parametrize("bad", ["a/#/b", "a/b#", "a+/b", "#/x"])
def test_invalid_topic_filter_rejected_MQTT_4_7_1_1_MQTT_4_7_1_2(broker, bad):
    # Either a SUBACK 0x8F for that filter, or (mosquitto) the whole packet
    # treated as malformed: DISCONNECT and close. Never a granted QoS.
    c, _ = v5_client(broker, "badfilter")
    c.send(subscribe(1, [(bad, sub_opts(1))], version=5))
    first = c.recv()
    if first.type == SUBACK:
        assert first.codes == [0x8F], first.codes
        c.close()
        return
    assert first.type == DISCONNECT and first.reason in (0x81, 0x82, 0x8F), first
    assert c.expect_closed() == []


def test_subscription_identifier_delivered_MQTT_3_3_4_3(broker):
    s, _ = v5_client(broker, "sid")
    s.send(subscribe(1, [("sid/a", 0)], version=5, properties=[("subscription_id", 42)]))
    s.expect(SUBACK)
    s.send(subscribe(2, [("sid/b", 0)], version=5))
    s.expect(SUBACK)
    s.send(subscribe(3, [("sid/big", 0)], version=5,
                     properties=[("subscription_id", 268435455)]))
    s.expect(SUBACK)
    p, _ = v5_client(broker, "sid-pub")
    for t in ("sid/a", "sid/b", "sid/big"):
        p.send(publish(t, b"x", version=5))
    got = {m.topic: m.props.get("subscription_id") for m in (s.expect(PUBLISH) for _ in range(3))}
    assert got == {"sid/a": [42], "sid/b": None, "sid/big": [268435455]}
    s.close()
    p.close()


def _overlap(broker, cid):
    s, _ = v5_client(broker, cid)
    s.send(subscribe(1, [("ov/#", 0)], version=5, properties=[("subscription_id", 5)]))
    s.expect(SUBACK)
    s.send(subscribe(2, [("ov/+", 0)], version=5, properties=[("subscription_id", 7)]))
    s.expect(SUBACK)
    s.send(subscribe(3, [("ov/x", 0)], version=5))  # no identifier
    s.expect(SUBACK)
    p, _ = v5_client(broker, cid + "-pub")
    p.send(publish("ov/x", b"m", version=5))
    copies = [m for m in drain(s, 0.5) if m.type == PUBLISH]
    s.close()
    p.close()
    return copies


def test_overlapping_subscriptions_identifiers_all_sent_MQTT_3_3_4_3_MQTT_3_3_4_5(broker):
    copies = _overlap(broker, "ov1")
    assert copies and all(m.payload == b"m" for m in copies)
    ids = [i for m in copies for i in m.props.get("subscription_id", [])]
    assert sorted(ids) == [5, 7], [m.props for m in copies]


@pytest.mark.hato_only("mosquitto 2.0.11 sends one copy per matching subscription")
def test_overlapping_subscriptions_one_copy_with_all_identifiers_MQTT_3_3_4_4(broker):
    copies = _overlap(broker, "ov2")
    assert len(copies) == 1, copies
    assert sorted(copies[0].props.get("subscription_id", [])) == [5, 7]


def test_resubscribe_replaces_subscription_identifier_MQTT_3_8_4_3(broker):
    s, _ = v5_client(broker, "resub")
    s.send(subscribe(1, [("resub/t", 0)], version=5, properties=[("subscription_id", 3)]))
    s.expect(SUBACK)
    s.send(subscribe(2, [("resub/t", sub_opts(1))], version=5,
                     properties=[("subscription_id", 9)]))
    s.expect(SUBACK)
    p, _ = v5_client(broker, "resub-pub")
    p.send(publish("resub/t", b"x", qos=1, pid=1, version=5))
    got = [m for m in drain(s, 0.5) if m.type == PUBLISH]
    assert len(got) == 1, "the subscription was replaced, not added"
    assert got[0].props.get("subscription_id") == [9] and got[0].qos == 1
    s.close()
    p.close()


def test_no_local_MQTT_3_8_3_3(broker):
    s = v5_subscriber(broker, "nolocal", [("nl/t", sub_opts(1, no_local=True)),
                                         ("nl/u", sub_opts(1))])
    s.send(publish("nl/t", b"own", qos=1, pid=10, version=5))
    s.send(publish("nl/u", b"own-u", qos=1, pid=11, version=5))
    other, _ = v5_client(broker, "nolocal-other")
    other.send(publish("nl/t", b"other", qos=1, pid=1, version=5))
    other.expect(PUBACK)
    got = [m for m in drain(s, 0.5)]
    pubs = [(m.topic, m.payload) for m in got if m.type == PUBLISH]
    assert ("nl/t", b"own") not in pubs
    assert sorted(pubs) == [("nl/t", b"other"), ("nl/u", b"own-u")]
    assert sorted(m.pid for m in got if m.type == PUBACK) == [10, 11]
    s.close()
    other.close()


def test_retain_as_published_MQTT_3_3_1_12_MQTT_3_3_1_13(broker):
    s = v5_subscriber(broker, "rap", [("rap/keep", sub_opts(0, retain_as_published=True)),
                                     ("rap/clear", sub_opts(0))])
    p, _ = v5_client(broker, "rap-pub")
    p.send(publish("rap/keep", b"1", retain=True, version=5))
    p.send(publish("rap/clear", b"2", retain=True, version=5))
    p.send(publish("rap/keep", b"3", retain=False, version=5))
    got = [(m.topic, m.payload, m.retain) for m in (s.expect(PUBLISH) for _ in range(3))]
    assert sorted(got) == [("rap/clear", b"2", False), ("rap/keep", b"1", True),
                           ("rap/keep", b"3", False)]
    # Cleanup: the retained messages would leak into nothing else, but be tidy.
    p.send(publish("rap/keep", b"", retain=True, version=5))
    p.send(publish("rap/clear", b"", retain=True, version=5))
    s.close()
    p.close()


def test_retain_handling_0_1_2_MQTT_3_3_1_9_to_11(broker):
    p, _ = v5_client(broker, "rh-pub")
    p.send(publish("rh/t", b"kept", qos=1, pid=1, retain=True, version=5))
    p.expect(PUBACK)
    s, _ = v5_client(broker, "rh-sub")

    def sub(pid, rh):
        s.send(subscribe(pid, [("rh/t", sub_opts(0, retain_handling=rh))], version=5))
        s.expect(SUBACK)
        return [m for m in drain(s, 0.3) if m.type == PUBLISH]

    got = sub(1, 1)  # new subscription: retained sent              (MQTT-3.3.1-10)
    assert [(m.payload, m.retain) for m in got] == [(b"kept", True)]
    assert sub(2, 1) == []  # subscription exists: not sent         (MQTT-3.3.1-10)
    assert sub(3, 2) == []  # never sent                            (MQTT-3.3.1-11)
    got = sub(4, 0)  # always sent, even when it exists             (MQTT-3.3.1-9)
    assert [(m.payload, m.retain) for m in got] == [(b"kept", True)]
    s.close()
    p.close()


def test_unsuback_reason_codes_no_subscription_existed_0x11_3_11_3(broker):
    c = v5_subscriber(broker, "unsub", [("us/a", 0)])
    c.send(unsubscribe(9, ["us/a", "us/none", "us/a"], version=5))
    a = c.expect(UNSUBACK)
    assert a.pid == 9
    assert a.codes == [0x00, 0x11, 0x11]
    c.close()


# --- Shared subscriptions ------------------------------------------------------------

def test_shared_subscription_each_message_to_one_member_MQTT_4_8_2(broker):
    members = [v5_subscriber(broker, f"share-{i}", [("$share/grp/sh/t", sub_opts(1))])
               for i in range(2)]
    plain = v5_subscriber(broker, "share-plain", [("sh/t", 0)])
    p, _ = v5_client(broker, "share-pub")
    for i in range(10):
        p.send(publish("sh/t", b"%d" % i, qos=1, pid=i + 1, version=5))
    for _ in range(10):
        p.expect(PUBACK)
    per_member = []
    for m in members:
        got = []
        for pkt in drain(m, 0.5):
            assert pkt.type == PUBLISH and pkt.topic == "sh/t"  # not "$share/..."
            m.send(ack(PUBACK, pkt.pid))
            got.append(pkt.payload)
        per_member.append(got)
    everything = sorted(x for got in per_member for x in got)
    assert everything == sorted(b"%d" % i for i in range(10)), per_member
    assert all(len(got) >= 2 for got in per_member), f"not balanced: {per_member}"
    # Non-shared subscribers still get everything.
    assert len([x for x in drain(plain, 0.3) if x.type == PUBLISH]) == 10
    for c in members + [plain, p]:
        c.close()


def test_shared_and_plain_subscription_of_one_client_both_deliver_MQTT_4_8_2(broker):
    s = v5_subscriber(broker, "share-both", [("$share/g/both/t", 0), ("both/t", 0)])
    p, _ = v5_client(broker, "share-both-pub")
    p.send(publish("both/t", b"x", version=5))
    got = [m.payload for m in drain(s, 0.5) if m.type == PUBLISH]
    assert got == [b"x", b"x"]
    s.close()
    p.close()


def test_unsubscribe_shared_subscription_MQTT_3_10_4_2(broker):
    s = v5_subscriber(broker, "share-unsub", [("$share/g/su/t", 0)])
    s.send(unsubscribe(2, ["$share/g/su/t", "$share/other/su/t"], version=5))
    assert s.expect(UNSUBACK).codes == [0x00, 0x11]
    p, _ = v5_client(broker, "share-unsub-pub")
    p.send(publish("su/t", b"x", version=5))
    s.expect_nothing(0.3)
    s.close()
    p.close()


@pytest.mark.hato_only("mosquitto 2.0.11 sends retained messages on a shared subscribe")
def test_shared_subscription_gets_no_retained_messages_3_3_1_3(broker):
    # Retained messages go to new Non-shared Subscriptions only (3.3.1.3).
    p, _ = v5_client(broker, "share-ret-pub")
    p.send(publish("shr/t", b"old", qos=1, pid=1, retain=True, version=5))
    p.expect(PUBACK)
    s = v5_subscriber(broker, "share-ret", [("$share/g/shr/t", sub_opts(1))])
    s.expect_nothing(0.3)
    p.send(publish("shr/t", b"new", qos=1, pid=2, version=5))
    assert s.expect(PUBLISH).payload == b"new"
    s.close()
    p.close()


@pytest.mark.hato_only("mosquitto 2.0.11 accepts No Local on a shared subscription")
def test_no_local_on_shared_subscription_protocol_error_MQTT_3_8_3_4(broker):
    c, _ = v5_client(broker, "share-nl")
    c.send(subscribe(1, [("$share/g/nl/t", sub_opts(1, no_local=True))], version=5))
    got = c.expect_closed()
    assert [(m.type, m.reason) for m in got] == [(DISCONNECT, 0x82)], got


@pytest.mark.hato_only("mosquitto 2.0.11 grants '$share/g' as an ordinary filter")
def test_shared_subscription_without_filter_rejected_MQTT_4_8_2_2(broker):
    c, _ = v5_client(broker, "share-nofilter")
    c.send(subscribe(1, [("$share/g", 0)], version=5))
    first = c.recv()
    if first.type == SUBACK:
        assert first.codes == [0x8F]
    else:
        assert first.type == DISCONNECT and first.reason in (0x81, 0x82, 0x8F)
        c.expect_closed()
    c.close()
