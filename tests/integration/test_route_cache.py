"""Routing the next message of a topic after the subscriptions changed.

hato keeps the last topic's matches per worker and reuses them for the next
message on that topic while the subscription tree is unchanged (route.c,
issue 15 part 3). These tests publish several messages on one topic, change
the subscriptions in between and check that every message goes exactly to
the subscriptions that exist when it is published: new ones get it, removed
ones do not, replaced options apply, a shared group still takes turns, No
Local still looks at the publisher of each message, and a session that ended
while it was cached is not touched again. They hold for Mosquitto too.

A message that must not arrive is checked by a marker published after it
by the same client: the next packet must be the marker (no sleeps).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mqttraw import (UNSUBACK, connected_client, disconnect, publish,  # noqa: E402
                     publish_ok, recv_publish, sub_opts, subscribe_ok, unsubscribe,
                     v5_subscriber)


def got(client, topic, payload, qos=0):
    p = recv_publish(client)
    assert (p.topic, p.payload, p.qos) == (topic, payload, qos), p
    return p


def test_added_removed_and_replaced_subscriptions_apply_to_the_next_message(broker):
    a = connected_client(broker, "rc-a")
    subscribe_ok(a, 1, [("rc/t", 0), ("rc/marker", 0)])
    pub = connected_client(broker, "rc-pub")
    for _ in range(3):  # the same topic again and again: the matches are reused
        publish_ok(pub, "rc/t", b"1")
        got(a, "rc/t", b"1")

    # A new subscription gets the next message (MQTT-3.8.4-4: the server
    # starts sending once the SUBACK is sent).
    b = connected_client(broker, "rc-b")
    subscribe_ok(b, 1, [("rc/#", 0)])
    publish_ok(pub, "rc/t", b"2")
    got(a, "rc/t", b"2")
    got(b, "rc/t", b"2")

    # Unsubscribed (MQTT-3.10.4-2: no new messages after the UNSUBACK).
    a.send(unsubscribe(2, ["rc/t"]))
    assert a.expect(UNSUBACK).pid == 2
    publish_ok(pub, "rc/t", b"3")
    publish_ok(pub, "rc/marker", b"m")
    got(b, "rc/t", b"3")
    got(b, "rc/marker", b"m")
    got(a, "rc/marker", b"m")  # not "3"

    # Subscribed again at QoS 1, then the same filter replaced at QoS 0
    # (MQTT-3.8.4-3: the new options apply to the messages that follow).
    subscribe_ok(a, 3, [("rc/t", 1)])
    publish_ok(pub, "rc/t", b"4", qos=1, pid=7)
    got(a, "rc/t", b"4", qos=1)
    got(b, "rc/t", b"4")
    subscribe_ok(a, 4, [("rc/t", 0)])
    publish_ok(pub, "rc/t", b"5", qos=1, pid=8)
    got(a, "rc/t", b"5", qos=0)
    got(b, "rc/t", b"5")


def test_session_ended_after_its_match_was_kept(broker):
    """A clean session matched by the previous messages disconnects; the
    next message on the topic goes to the others only (and the broker's
    shutdown, checked by the fixture, finds nothing held or freed twice)."""
    c = connected_client(broker, "rc-gone")
    subscribe_ok(c, 1, [("rc2/t", 0)])
    d = connected_client(broker, "rc-stays")
    subscribe_ok(d, 1, [("rc2/t", 0)])
    pub = connected_client(broker, "rc2-pub")
    for i in range(3):
        publish_ok(pub, "rc2/t", b"%d" % i)
        got(c, "rc2/t", b"%d" % i)
        got(d, "rc2/t", b"%d" % i)
    c.send(disconnect())
    c.expect_closed()
    for i in range(3, 6):
        publish_ok(pub, "rc2/t", b"%d" % i)
        got(d, "rc2/t", b"%d" % i)


def test_shared_group_takes_turns_on_one_topic(broker):
    """A shared subscription's member is chosen per message (MQTT-4.8.2-3:
    each message goes to one member), so a repeated topic must not pin one
    member: both online members get some of the messages, none twice."""
    m1 = connected_client(broker, "rc-m1")
    subscribe_ok(m1, 1, [("$share/g/rc3/t", 0)])
    m2 = connected_client(broker, "rc-m2")
    subscribe_ok(m2, 1, [("$share/g/rc3/t", 0), ("rc3/marker", 0)])
    subscribe_ok(m1, 2, [("rc3/marker", 0)])
    pub = connected_client(broker, "rc3-pub")
    n = 8
    for i in range(n):
        publish_ok(pub, "rc3/t", b"%d" % i)
    publish_ok(pub, "rc3/marker", b"m")
    seen = {}
    for name, cl in (("m1", m1), ("m2", m2)):
        seen[name] = []
        for _ in range(n + 1):  # bounded: at most every message, then the marker
            p = recv_publish(cl)
            if p.topic == "rc3/marker":
                break
            seen[name].append(int(p.payload))
    assert sorted(seen["m1"] + seen["m2"]) == list(range(n)), seen
    assert seen["m1"] and seen["m2"], f"one member got every message: {seen}"


def test_no_local_is_checked_per_message_on_a_repeated_topic(broker):
    """MQTT-3.8.3-3: with No Local, a client's own messages are not sent
    back, whoever published the previous message on the topic."""
    p1 = v5_subscriber(broker, "rc-nl1", [("rc4/t", sub_opts(0, no_local=True))])
    p2 = v5_subscriber(broker, "rc-nl2", [("rc4/t", sub_opts(0))])
    order = [(p2, b"a"), (p2, b"b"), (p1, b"c"), (p2, b"d"), (p1, b"e"), (p1, b"f"), (p2, b"g")]
    for who, payload in order:
        who.send(publish("rc4/t", payload, version=5))
        got(p2, "rc4/t", payload)  # p2 gets all: the order is settled before the next
    for who, payload in order:
        if who is p2:
            got(p1, "rc4/t", payload)
    p2.send(publish("rc4/t", b"end", version=5))
    got(p1, "rc4/t", b"end")  # nothing of its own came before it
