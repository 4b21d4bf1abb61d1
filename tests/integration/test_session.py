"""Session state for MQTT 3.1.1 (CleanSession, offline queueing, limits)."""

from conftest import REFERENCE
from mqttraw import (PINGRESP, PUBLISH, connected_client, disconnect, pingreq, publish,
                     publish_ok, recv_publish, subscribe_ok)


def sync(c):
    c.send(pingreq())
    c.expect(PINGRESP)


def leave(c):
    """DISCONNECT cleanly and wait until the broker closed the connection."""
    c.send(disconnect())
    c.expect_closed(3)
    c.close()


def drain(c, limit=50, quiet=0.4):
    got = []
    for _ in range(limit):
        try:
            got.append(recv_publish(c, timeout=quiet))
        except TimeoutError:
            return got
    raise AssertionError(f"more than {limit} messages")


def test_persistent_session_keeps_subscriptions_MQTT_3_1_2_4(broker):
    """CleanSession 0: subscriptions survive a reconnect (MQTT-3.1.2-4, MQTT-3.2.2-2)."""
    c = connected_client(broker, "keep", clean=False)
    subscribe_ok(c, 1, [("sess/k", 1)])
    leave(c)
    with connected_client(broker, "keep", clean=False) as c2, connected_client(broker, "p") as pub:
        assert c2.connack.session_present
        publish_ok(pub, "sess/k", b"still here", qos=1, pid=1)
        assert recv_publish(c2).payload == b"still here"


def test_offline_qos1_qos2_queued_qos0_not_MQTT_3_1_2_5(broker):
    """Offline QoS 1 and 2 messages are stored and delivered on reconnect, in order; QoS 0
    messages are not (queue_qos0_messages defaults to false) (MQTT-3.1.2-5)."""
    c = connected_client(broker, "off", clean=False)
    subscribe_ok(c, 1, [("sess/o", 2)])
    leave(c)
    with connected_client(broker, "p") as pub:
        publish_ok(pub, "sess/o", b"q0", qos=0)
        publish_ok(pub, "sess/o", b"q1", qos=1, pid=1)
        publish_ok(pub, "sess/o", b"q2", qos=2, pid=2)
        sync(pub)
    with connected_client(broker, "off", clean=False) as c2:
        assert c2.connack.session_present
        got = drain(c2)
        assert [(p.payload, p.qos) for p in got] == [(b"q1", 1), (b"q2", 2)]


def test_offline_queue_survives_abnormal_close_MQTT_3_1_2_5(broker):
    """A persistent session that ended by a dropped socket (no DISCONNECT) queues as well."""
    c = connected_client(broker, "drop", clean=False)
    subscribe_ok(c, 1, [("sess/d", 1)])
    sync(c)
    c.close()
    with connected_client(broker, "p") as pub:
        # the broker may notice the close after our publish; either way the message is kept
        publish_ok(pub, "sess/d", b"kept", qos=1, pid=1)
    with connected_client(broker, "drop", clean=False) as c2:
        assert [p.payload for p in drain(c2)] == [b"kept"]


def test_queue_qos0_messages_option(broker_factory):
    """queue_qos0_messages true: QoS 0 messages are queued for offline persistent sessions."""
    b = broker_factory("queue_qos0_messages true\n")
    c = connected_client(b, "q0", clean=False)
    subscribe_ok(c, 1, [("sess/q0", 0)])
    leave(c)
    with connected_client(b, "p") as pub:
        pub.send(publish("sess/q0", b"zero"))
        sync(pub)
    with connected_client(b, "q0", clean=False) as c2:
        got = drain(c2)
        assert [(p.payload, p.qos) for p in got] == [(b"zero", 0)]


def test_clean_session_discards_old_session_MQTT_3_1_2_6(broker):
    """CleanSession 1 discards the previous session (MQTT-3.1.2-6): no subscriptions, no queued
    messages, session present 0; and the clean session is not kept after it ends."""
    c = connected_client(broker, "wipe", clean=False)
    subscribe_ok(c, 1, [("sess/w", 1)])
    leave(c)
    with connected_client(broker, "p") as pub:
        publish_ok(pub, "sess/w", b"queued", qos=1, pid=1)
    c = connected_client(broker, "wipe", clean=True)
    assert not c.connack.session_present
    c.expect_nothing(0.3)  # the queued message went with the old session
    with connected_client(broker, "p") as pub:
        publish_ok(pub, "sess/w", b"live", qos=1, pid=2)
    c.expect_nothing(0.3)  # no subscription any more
    leave(c)
    with connected_client(broker, "wipe", clean=False) as c2:
        assert not c2.connack.session_present
        c2.expect_nothing(0.3)


def test_max_queued_messages_limit(broker_factory):
    """max_queued_messages 5: of 10 QoS 1 messages published while offline, exactly 5 are
    delivered, in publish order. One worker thread: with several, a PUBACK can reach the
    publisher before the message has reached the session's worker, and the last message
    could then arrive after the reconnect and be delivered, not dropped (a race of the test,
    not a second limit)."""
    b = broker_factory("max_queued_messages 5\n" + ("threads 1\n" if REFERENCE == "hato" else ""))
    c = connected_client(b, "lim", clean=False)
    subscribe_ok(c, 1, [("sess/l", 1)])
    leave(c)
    with connected_client(b, "p") as pub:
        for i in range(10):
            publish_ok(pub, "sess/l", b"%d" % i, qos=1, pid=i + 1)
    with connected_client(b, "lim", clean=False) as c2:
        got = [int(p.payload) for p in drain(c2)]
        assert len(got) == 5, got
        assert got == sorted(got)


def test_takeover_keeps_persistent_session_MQTT_3_1_4_2(broker):
    """Taking over a live persistent session keeps it (session present 1, subscriptions kept)
    (MQTT-3.1.4-2, MQTT-3.2.2-2)."""
    first = connected_client(broker, "tk", clean=False)
    subscribe_ok(first, 1, [("sess/tk", 1)])
    second = connected_client(broker, "tk", clean=False)
    with first, second, connected_client(broker, "p") as pub:
        first.expect_closed(3)
        assert second.connack.session_present
        publish_ok(pub, "sess/tk", b"moved", qos=1, pid=1)
        assert recv_publish(second).payload == b"moved"


def test_takeover_with_clean_session_discards_MQTT_3_1_2_6(broker):
    """Taking over a persistent session with CleanSession 1 discards it (MQTT-3.1.2-6)."""
    first = connected_client(broker, "tc", clean=False)
    subscribe_ok(first, 1, [("sess/tc", 1)])
    second = connected_client(broker, "tc", clean=True)
    with first, second, connected_client(broker, "p") as pub:
        first.expect_closed(3)
        assert not second.connack.session_present
        publish_ok(pub, "sess/tc", b"x", qos=1, pid=1)
        second.expect_nothing(0.3)


def test_sessions_are_per_client_id_MQTT_3_1_2_4(broker):
    """Two persistent sessions with different ClientIds do not share state."""
    a = connected_client(broker, "sa", clean=False)
    subscribe_ok(a, 1, [("sess/a", 1)])
    leave(a)
    b = connected_client(broker, "sb", clean=False)
    subscribe_ok(b, 1, [("sess/b", 1)])
    leave(b)
    with connected_client(broker, "p") as pub:
        publish_ok(pub, "sess/a", b"for-a", qos=1, pid=1)
        publish_ok(pub, "sess/b", b"for-b", qos=1, pid=2)
    with connected_client(broker, "sa", clean=False) as a2:
        assert [p.payload for p in drain(a2)] == [b"for-a"]
    with connected_client(broker, "sb", clean=False) as b2:
        got = drain(b2)
        assert [p.payload for p in got] == [b"for-b"]
        assert all(p.type == PUBLISH for p in got)
