"""Retained messages (MQTT 3.1.1 section 3.3.1.3)."""

from mqttraw import (SUBACK, publish, subscribe, PINGRESP, PUBLISH, connected_client, pingreq, publish_ok, recv_publish,
                     subscribe_ok)


def sync(c):
    c.send(pingreq())
    c.expect(PINGRESP)


def test_retained_delivered_on_subscribe_MQTT_3_3_1_6_8(broker):
    """A retained message is stored (MQTT-3.3.1-5) and sent to a new subscriber with RETAIN 1
    (MQTT-3.3.1-6, MQTT-3.3.1-8)."""
    with connected_client(broker, "pub") as pub:
        publish_ok(pub, "ret/a", b"kept", qos=1, pid=1, retain=True)
    with connected_client(broker, "sub") as sub:
        subscribe_ok(sub, 1, [("ret/a", 1)])
        p = recv_publish(sub)
        assert p.retain and p.payload == b"kept" and p.topic == "ret/a" and p.qos == 1
        sub.expect_nothing(0.3)


def test_retained_replaced_MQTT_3_3_1_5(broker):
    """A new retained message replaces the stored one (MQTT-3.3.1-5); QoS 0 too (MQTT-3.3.1-7)."""
    with connected_client(broker, "pub") as pub:
        publish_ok(pub, "ret/r", b"first", qos=1, pid=1, retain=True)
        publish_ok(pub, "ret/r", b"second", qos=2, pid=2, retain=True)
        publish_ok(pub, "ret/r", b"third", qos=0, retain=True)
        sync(pub)
    with connected_client(broker, "sub") as sub:
        subscribe_ok(sub, 1, [("ret/r", 2)])
        p = recv_publish(sub)
        assert p.payload == b"third" and p.retain and p.qos == 0
        sub.expect_nothing(0.3)


def test_zero_byte_retained_clears_MQTT_3_3_1_10_11(broker):
    """A zero-byte retained PUBLISH removes the retained message (MQTT-3.3.1-10) and is not
    stored itself (MQTT-3.3.1-11); current subscribers receive the empty message normally."""
    with connected_client(broker, "cur") as cur, connected_client(broker, "pub") as pub:
        subscribe_ok(cur, 1, [("ret/z", 1)])
        publish_ok(pub, "ret/z", b"x", qos=1, pid=1, retain=True)
        assert recv_publish(cur).payload == b"x"
        publish_ok(pub, "ret/z", b"", qos=1, pid=2, retain=True)
        p = recv_publish(cur)
        assert p.payload == b"" and p.topic == "ret/z" and not p.retain
    with connected_client(broker, "new") as new:
        subscribe_ok(new, 1, [("ret/z", 1), ("ret/#", 1)])
        new.expect_nothing(0.5)


def test_non_retained_publish_keeps_retained_MQTT_3_3_1_12(broker):
    """A PUBLISH with RETAIN 0 neither stores nor removes the retained message (MQTT-3.3.1-12)."""
    with connected_client(broker, "pub") as pub:
        publish_ok(pub, "ret/k", b"stored", qos=1, pid=1, retain=True)
        publish_ok(pub, "ret/k", b"transient", qos=1, pid=2, retain=False)
        publish_ok(pub, "ret/k", b"", qos=1, pid=3, retain=False)
    with connected_client(broker, "sub") as sub:
        subscribe_ok(sub, 1, [("ret/k", 1)])
        p = recv_publish(sub)
        assert p.payload == b"stored" and p.retain
        sub.expect_nothing(0.3)


def test_retained_delivered_with_min_qos_MQTT_3_8_4_6(broker):
    """Retained messages are delivered with min(stored QoS, granted QoS) (MQTT-3.8.4-6)."""
    with connected_client(broker, "pub") as pub:
        publish_ok(pub, "rq/two", b"2", qos=2, pid=1, retain=True)
        publish_ok(pub, "rq/zero", b"0", qos=0, retain=True)
        sync(pub)
    with connected_client(broker, "s1") as s1:
        subscribe_ok(s1, 1, [("rq/two", 1)])
        p = recv_publish(s1)
        assert p.qos == 1 and p.retain and p.payload == b"2"
        subscribe_ok(s1, 2, [("rq/zero", 2)])
        p = recv_publish(s1)
        assert p.qos == 0 and p.retain and p.payload == b"0"
    with connected_client(broker, "s2") as s2:
        subscribe_ok(s2, 1, [("rq/two", 2)])
        p = recv_publish(s2)
        assert p.qos == 2 and p.retain


def test_retained_for_wildcard_subscription_MQTT_3_3_1_6(broker):
    """A wildcard subscription receives every matching retained message, and only those."""
    with connected_client(broker, "pub") as pub:
        for t in ("rw/a", "rw/b", "rw/b/c", "other/a"):
            publish_ok(pub, t, t.encode(), qos=1, pid=1, retain=True)
    with connected_client(broker, "sub") as sub:
        subscribe_ok(sub, 1, [("rw/+", 1)])
        got = [recv_publish(sub) for _ in range(2)]
        assert sorted(p.topic for p in got) == ["rw/a", "rw/b"]
        assert all(p.retain and p.payload == p.topic.encode() for p in got)
        sub.expect_nothing(0.3)
        subscribe_ok(sub, 2, [("rw/#", 0)])
        got = [recv_publish(sub) for _ in range(3)]
        assert sorted(p.topic for p in got) == ["rw/a", "rw/b", "rw/b/c"]
        sub.expect_nothing(0.3)


def test_retained_resent_on_resubscribe_MQTT_3_8_4_3(broker):
    """Re-subscribing to an identical filter re-sends matching retained messages (MQTT-3.8.4-3)."""
    with connected_client(broker, "pub") as pub:
        publish_ok(pub, "rr/t", b"again", qos=1, pid=1, retain=True)
    with connected_client(broker, "sub") as sub:
        subscribe_ok(sub, 1, [("rr/t", 1)])
        assert recv_publish(sub).payload == b"again"
        subscribe_ok(sub, 2, [("rr/t", 1)])
        p = recv_publish(sub)
        assert p.payload == b"again" and p.retain
        sub.expect_nothing(0.3)


def test_retained_not_sent_for_dollar_topic_to_hash_MQTT_4_7_2_1(broker):
    """Retained '$'-topic messages are not sent to a '#' subscriber (MQTT-4.7.2-1)."""
    with connected_client(broker, "pub") as pub:
        publish_ok(pub, "$ret/x", b"d", qos=1, pid=1, retain=True)
        publish_ok(pub, "plain/x", b"p", qos=1, pid=2, retain=True)
    with connected_client(broker, "sub") as sub:
        subscribe_ok(sub, 1, [("#", 0)])
        got = []
        for _ in range(20):
            try:
                got.append(sub.recv(0.5))
            except TimeoutError:
                break
        topics = [p.topic for p in got if p.type == PUBLISH]
        assert "plain/x" in topics and "$ret/x" not in topics, topics
    with connected_client(broker, "sub2") as sub2:
        subscribe_ok(sub2, 1, [("$ret/#", 0)])
        assert recv_publish(sub2).payload == b"d"


def test_retained_answer_to_subscribe_is_never_cut_by_the_output_limit_MQTT_3_3_1_6(broker):
    """MQTT-3.3.1-6: a new subscription receives every matching retained message. 20,000
    retained messages of 300 bytes (6 MB) are more than max_output_buffer (4 MiB) at once:
    they are all sent, in topic order per level, none dropped as a slow consumer's QoS 0."""
    n, body = 20000, b"x" * 300
    with connected_client(broker, "ret-filler") as p:
        for i in range(n - 1):
            p.send(publish(f"big/{i}", body, retain=True))
        publish_ok(p, f"big/{n - 1}", body, qos=1, pid=1, retain=True)  # all stored before it
    with connected_client(broker, "ret-reader") as s:
        s.send(subscribe(1, [("big/#", 0)]))
        assert s.expect(SUBACK).codes == [0]
        got = set()
        for _ in range(n):
            pkt = recv_publish(s, timeout=30)
            assert pkt.retain and pkt.payload == body
            got.add(pkt.topic)
        assert len(got) == n
