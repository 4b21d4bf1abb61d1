"""Topics a client may not publish to, as in Mosquitto 2.0 (the spec leaves
this to the server): `$SYS/...` belongs to the broker, so a client cannot
forge its statistics or its log lines, and `$share/...` names a shared
subscription, not a topic. MQTT 5 is told Not authorized (0x87); MQTT 3 has
no way to say it, so the message is acknowledged and dropped. Other
`$`-topics are ordinary (MQTT-4.7.2-1 only keeps wildcards off them).
Runs against Debian's mosquitto too (HATO_TEST_BROKER=mosquitto)."""

import pytest

from mqttraw import (PUBACK, PUBCOMP, PUBLISH, PUBREC, ack, connected_client, drain, publish,
                     recv_publish, subscribe_ok, v5_client)


@pytest.mark.parametrize("topic", ["$SYS/broker/uptime", "$SYS", "$SYSTEM/x", "$share/g/t"])
def test_v5_publish_to_reserved_topic_refused_0x87(broker_factory, topic):
    b = broker_factory()
    watch = connected_client(b, "watch")
    if not topic.startswith("$share"):
        subscribe_ok(watch, 1, [(topic, 0)])
        drain(watch)  # the broker's own retained $SYS value, if any
    c, _ = v5_client(b, "forger")
    c.send(publish(topic, b"forged", qos=1, pid=1, version=5))
    a = c.expect(PUBACK)
    assert a.pid == 1 and a.reason == 0x87, a
    c.send(publish(topic, b"forged", qos=2, pid=2, version=5))
    r = c.expect(PUBREC)
    assert r.pid == 2 and r.reason == 0x87, r
    assert not [p for p in drain(watch) if p.type == PUBLISH and p.payload == b"forged"]
    c.close()
    watch.close()


def test_v311_publish_to_sys_acknowledged_and_dropped(broker_factory):
    b = broker_factory()
    watch = connected_client(b, "watch")
    subscribe_ok(watch, 1, [("$SYS/forged", 0)])
    c = connected_client(b, "forger")
    c.send(publish("$SYS/forged", b"x", qos=1, pid=1))
    assert c.expect(PUBACK).pid == 1
    c.send(publish("$SYS/forged", b"x", qos=2, pid=2))
    assert c.expect(PUBREC).pid == 2
    c.send(ack(6, 2))  # PUBREL: the exchange completes as usual
    assert c.expect(PUBCOMP).pid == 2
    c.send(publish("$SYS/forged", b"x", qos=0, retain=True))
    assert not [p for p in drain(watch) if p.type == PUBLISH]
    late = connected_client(b, "late")
    subscribe_ok(late, 1, [("$SYS/forged", 0)])
    assert not [p for p in drain(late) if p.type == PUBLISH]  # nothing retained either
    for x in (c, watch, late):
        x.close()


def test_other_dollar_topics_are_ordinary(broker_factory):
    b = broker_factory()
    sub = connected_client(b, "sub")
    subscribe_ok(sub, 1, [("$app/#", 0)])
    pub, _ = v5_client(b, "pub")
    pub.send(publish("$app/x", b"ok", qos=1, pid=1, version=5))
    assert pub.expect(PUBACK).reason == 0  # success: one subscriber
    m = recv_publish(sub)
    assert m.topic == "$app/x" and m.payload == b"ok"
    # Mosquitto compares the first four characters: "$SYSTEM/x" is refused too.
    pub.send(publish("$SYSTEM/x", b"no", qos=1, pid=2, version=5))
    assert pub.expect(PUBACK).reason == 0x87
    pub.close()
    sub.close()
