"""Outgoing topic aliases (MQTT 5, 3.3.2.3.4): a client that sends Topic Alias
Maximum > 0 in CONNECT gets aliases for the topics hato sends it, up to
min(its maximum, max_topic_alias_broker). The first PUBLISH of a topic
carries the topic and the alias, later ones an empty topic and the alias.
Policy (as Mosquitto 2.1): the first N topics keep their aliases for the
connection; further topics go out in full. Mosquitto 2.0.11 sends no
aliases at all, so these tests are hato's only (Mosquitto 2.1 behaviour)."""

import pytest

from mqttraw import (PUBLISH, connected_client, publish, publish_ok, recv_publish, sub_opts,
                     subscribe, v5_client, SUBACK)

pytestmark = pytest.mark.hato_only("Mosquitto 2.0 sends no topic aliases (max_topic_alias_broker is 2.1)")


def _sub(b, cid, alias_max, filters, **kw):
    props = [("topic_alias_maximum", alias_max)] if alias_max is not None else []
    c, ack = v5_client(b, cid, properties=props, **kw)
    assert ack.reason == 0
    c.send(subscribe(1, [(f, sub_opts(q)) for f, q in filters], version=5))
    assert all(x < 0x80 for x in c.expect(SUBACK).codes)
    return c


def test_first_send_topic_and_alias_then_alias_only(broker_factory):
    """MQTT-3.3.2-8 (never 0), -11 (never above the client's maximum)."""
    b = broker_factory()
    sub = _sub(b, "sub", 5, [("a/#", 0)])
    pub = connected_client(b, "pub")
    for t in ["a/one", "a/one", "a/two", "a/one", "a/two"]:
        pub.send(publish(t, t.encode()))
    got = [recv_publish(sub) for _ in range(5)]
    assert [(p.topic, p.props.get("topic_alias"), p.payload) for p in got] == [
        ("a/one", 1, b"a/one"), ("", 1, b"a/one"), ("a/two", 2, b"a/two"),
        ("", 1, b"a/one"), ("", 2, b"a/two")]
    sub.close()
    pub.close()


def test_raw_bytes_of_aliased_publish(broker_factory):
    """The exact bytes: topic length 0, properties 03 23 00 01 (Topic Alias 1)."""
    b = broker_factory()
    sub = _sub(b, "sub", 1, [("t", 0)])
    pub = connected_client(b, "pub")
    pub.send(publish("t", b"x"))
    first = recv_publish(sub)
    assert bytes(first.body) == b"\x00\x01t" + b"\x03\x23\x00\x01" + b"x"
    pub.send(publish("t", b"y"))
    second = recv_publish(sub)
    assert bytes(second.body) == b"\x00\x00" + b"\x03\x23\x00\x01" + b"y"
    sub.close()
    pub.close()


def test_capped_by_the_client_maximum_first_topics_keep_theirs(broker_factory):
    """Client maximum 2 (below max_topic_alias_broker's default 10): the first
    two topics get aliases 1 and 2 for good, the third goes in full, always."""
    b = broker_factory()
    sub = _sub(b, "sub", 2, [("a/#", 0)])
    pub = connected_client(b, "pub")
    for t in ["a/1", "a/2", "a/3", "a/3", "a/1"]:
        pub.send(publish(t, b"p"))
    got = [(p.topic, p.props.get("topic_alias")) for p in (recv_publish(sub) for _ in range(5))]
    assert got == [("a/1", 1), ("a/2", 2), ("a/3", None), ("a/3", None), ("", 1)]
    assert all(a is None or 1 <= a <= 2 for _, a in got)  # MQTT-3.3.2-11
    sub.close()
    pub.close()


def test_capped_by_max_topic_alias_broker(broker_factory):
    b = broker_factory("max_topic_alias_broker 1\n")
    sub = _sub(b, "sub", 100, [("a/#", 0)])
    pub = connected_client(b, "pub")
    for t in ["a/1", "a/2", "a/1"]:
        pub.send(publish(t, b"p"))
    got = [(p.topic, p.props.get("topic_alias")) for p in (recv_publish(sub) for _ in range(3))]
    assert got == [("a/1", 1), ("a/2", None), ("", 1)]
    sub.close()
    pub.close()


def test_zero_disables(broker_factory):
    b = broker_factory("max_topic_alias_broker 0\n")
    sub = _sub(b, "sub", 10, [("a/#", 0)])
    pub = connected_client(b, "pub")
    for t in ["a/1", "a/1"]:
        pub.send(publish(t, b"p"))
    for _ in range(2):
        p = recv_publish(sub)
        assert p.topic == "a/1" and "topic_alias" not in p.props
    sub.close()
    pub.close()


@pytest.mark.parametrize("alias_max", [None, 0])
def test_no_alias_when_client_does_not_ask(broker_factory, alias_max):
    """No Topic Alias Maximum (or 0) in CONNECT: the server sends no alias
    (3.3.2.3.4: the client did not accept any)."""
    b = broker_factory()
    sub = _sub(b, "sub", alias_max, [("a/#", 0)])
    pub = connected_client(b, "pub")
    for t in ["a/1", "a/1"]:
        pub.send(publish(t, b"p"))
    for _ in range(2):
        p = recv_publish(sub)
        assert p.topic == "a/1" and "topic_alias" not in p.props
    sub.close()
    pub.close()


def test_mqtt3_subscriber_never_gets_aliases_next_to_an_aliased_one(broker_factory):
    """The shared encoding for clients without aliases is unchanged: a 3.1.1
    and a 5.0 subscriber without aliases get the full topic every time."""
    b = broker_factory()
    v5 = _sub(b, "v5", 3, [("t", 0)])
    plain = _sub(b, "plain5", None, [("t", 0)])
    v3 = connected_client(b, "v3")
    v3.send(subscribe(1, [("t", 0)]))
    v3.expect(SUBACK)
    pub = connected_client(b, "pub")
    for _ in range(2):
        pub.send(publish("t", b"p"))
    assert [recv_publish(v5).topic for _ in range(2)] == ["t", ""]
    assert [recv_publish(plain).topic for _ in range(2)] == ["t", "t"]
    assert [bytes(recv_publish(v3).body) for _ in range(2)] == [b"\x00\x01tp"] * 2
    for c in (v5, plain, v3, pub):
        c.close()


def test_aliases_start_again_after_reconnect_and_resend(broker_factory):
    """MQTT-3.3.2-7: no alias mapping carries over to a new connection. An
    in-flight QoS 1 message re-sent after the reconnect (DUP) carries its
    topic again, and so does the next message on that topic."""
    b = broker_factory()
    props = [("topic_alias_maximum", 5), ("session_expiry", 300)]
    sub, ack = v5_client(b, "sub", properties=props, clean=False)
    sub.send(subscribe(1, [("q", sub_opts(1))], version=5))
    sub.expect(SUBACK)
    pub = connected_client(b, "pub")
    publish_ok(pub, "q", b"1", qos=1)
    first = recv_publish(sub)          # acknowledged
    assert first.topic == "q" and first.props["topic_alias"] == 1
    publish_ok(pub, "q", b"2", qos=1)
    second = sub.expect(PUBLISH)       # not acknowledged: stays in flight
    assert second.topic == "" and second.props["topic_alias"] == 1
    sub.close()
    again, ack = v5_client(b, "sub", properties=props, clean=False)
    assert ack.session_present
    resent = again.expect(PUBLISH)
    assert resent.dup and resent.payload == b"2"
    assert resent.topic == "q" and resent.props.get("topic_alias") == 1
    publish_ok(pub, "q", b"3", qos=1)
    again.send(b"\x40\x02" + resent.pid.to_bytes(2, "big"))
    nxt = recv_publish(again)
    assert nxt.payload == b"3" and nxt.topic == "" and nxt.props["topic_alias"] == 1
    again.close()
    pub.close()


def test_aliased_packet_dropped_for_max_packet_size_does_not_establish_alias(broker_factory):
    """A message too large for the client (MQTT-3.1.2-25) is not sent, so the
    alias it would have set is not assigned: the next message on that topic
    carries the topic (otherwise the client would get an alias it never saw)."""
    b = broker_factory()
    c, ack = v5_client(b, "sub", properties=[("topic_alias_maximum", 5),
                                             ("maximum_packet_size", 64)])
    c.send(subscribe(1, [("big", sub_opts(0))], version=5))
    c.expect(SUBACK)
    pub = connected_client(b, "pub")
    pub.send(publish("big", b"x" * 200))
    pub.send(publish("big", b"small"))
    p = recv_publish(c)
    assert p.payload == b"small" and p.topic == "big" and p.props["topic_alias"] == 1
    c.close()
    pub.close()


def test_retained_and_aliases(broker_factory):
    """Retained messages sent on SUBSCRIBE use the same map."""
    b = broker_factory()
    pub = connected_client(b, "pub")
    publish_ok(pub, "r/1", b"kept", qos=1, retain=True)
    sub = _sub(b, "sub", 4, [("r/#", 0)])
    m = recv_publish(sub)
    assert m.retain and m.topic == "r/1" and m.props["topic_alias"] == 1
    pub.send(publish("r/1", b"live"))
    m = recv_publish(sub)
    assert m.topic == "" and m.props["topic_alias"] == 1 and m.payload == b"live"
    sub.close()
    pub.close()
