"""Will messages for MQTT 3.1.1 / 3.1 (section 3.1.2.5)."""

import time

import pytest

from mqttraw import (CONNACK, PINGRESP, RawClient, connect, connected_client, disconnect,
                     pingreq, publish, recv_publish, subscribe_ok)

# How long a keepalive-1 client may take to be dropped (1.5 s by the spec, plus slack).
KA_WAIT = 4


def watcher(broker, filt="will/#", qos=2, cid="watch"):
    c = connected_client(broker, cid)
    subscribe_ok(c, 1, [(filt, qos)])
    return c


def test_will_published_on_abnormal_close_MQTT_3_1_2_8(broker):
    """Socket closed without DISCONNECT: the will is published (MQTT-3.1.2-8) as a non-retained
    message (MQTT-3.1.2-14) with its topic and payload (MQTT-3.1.2-9)."""
    with watcher(broker) as w:
        c = connected_client(broker, "dying", will=dict(topic="will/dying", payload=b"gone", qos=0))
        c.close()
        p = recv_publish(w)
        assert p.topic == "will/dying" and p.payload == b"gone"
        assert p.qos == 0 and not p.retain
        w.expect_nothing(0.3)


def test_will_not_published_on_disconnect_MQTT_3_1_2_10(broker):
    """After DISCONNECT the will is discarded and not published (MQTT-3.1.2-10, MQTT-3.14.4-3)."""
    with watcher(broker) as w:
        c = connected_client(broker, "polite", will=dict(topic="will/polite", payload=b"no"))
        c.send(disconnect())
        c.expect_closed(3)
        c.close()
        w.expect_nothing(0.8)


def test_will_retain_MQTT_3_1_2_15(broker):
    """Will Retain 1: the will is published as a retained message (MQTT-3.1.2-15): live
    subscribers get RETAIN 0 (MQTT-3.3.1-9), later subscribers get it with RETAIN 1."""
    with watcher(broker) as w:
        c = connected_client(broker, "ret", will=dict(topic="will/ret", payload=b"R", qos=1,
                                                      retain=True))
        c.close()
        p = recv_publish(w)
        assert p.payload == b"R" and not p.retain
    with connected_client(broker, "late") as late:
        subscribe_ok(late, 1, [("will/ret", 1)])
        p = recv_publish(late)
        assert p.payload == b"R" and p.retain and p.qos == 1


def test_will_not_retained_when_retain_0_MQTT_3_1_2_14(broker):
    """Will Retain 0: not stored as retained (MQTT-3.1.2-14)."""
    with watcher(broker) as w:
        c = connected_client(broker, "noret", will=dict(topic="will/noret", payload=b"N"))
        c.close()
        assert recv_publish(w).payload == b"N"
    with connected_client(broker, "late") as late:
        subscribe_ok(late, 1, [("will/noret", 1)])
        late.expect_nothing(0.5)


def test_will_qos_MQTT_3_1_2_14(broker):
    """Will QoS: delivered with min(will QoS, granted QoS) (MQTT-3.1.2-14, MQTT-3.8.4-6)."""
    with watcher(broker, qos=2, cid="w2") as w2, watcher(broker, qos=0, cid="w0") as w0:
        c = connected_client(broker, "wq", will=dict(topic="will/q", payload=b"Q", qos=1))
        c.close()
        p = recv_publish(w2)
        assert p.qos == 1 and p.payload == b"Q"
        p = recv_publish(w0)
        assert p.qos == 0 and p.payload == b"Q"


def test_will_qos2_exact_flow_MQTT_3_1_2_14(broker):
    """A QoS 2 will goes through the full QoS 2 flow to a QoS 2 subscriber."""
    with watcher(broker, qos=2) as w:
        c = connected_client(broker, "wq2", will=dict(topic="will/q2", payload=b"2", qos=2))
        c.close()
        p = recv_publish(w)  # sends PUBREC, expects PUBREL, sends PUBCOMP
        assert p.qos == 2 and p.payload == b"2"
        w.expect_nothing(0.3)


@pytest.mark.hato_only("mosquitto 2.0.11 checks keep-alive only every ~5 s: a keepalive 1 client "
                       "is dropped after ~6 s, not within 1.5 s")
def test_will_published_on_keepalive_expiry_MQTT_3_1_2_24(broker):
    """A client that goes silent past 1.5 x keepalive is disconnected and its will is published
    (MQTT-3.1.2-24, MQTT-3.1.2-8)."""
    with watcher(broker) as w:
        c = connected_client(broker, "silent", keepalive=1,
                             will=dict(topic="will/silent", payload=b"timeout"))
        try:
            t0 = time.monotonic()
            p = recv_publish(w, timeout=KA_WAIT)
            assert p.payload == b"timeout"
            assert time.monotonic() - t0 >= 0.9
            c.expect_closed(1)
        finally:
            c.close()


def test_will_published_on_protocol_error_MQTT_3_1_2_8(broker):
    """A connection closed by the server for a protocol error publishes the will (MQTT-3.1.2-8)."""
    with watcher(broker) as w:
        c = connected_client(broker, "bad", will=dict(topic="will/bad", payload=b"err"))
        c.send(publish("will/+", b"wildcard in topic name"))
        c.expect_closed(3)
        c.close()
        assert recv_publish(w).payload == b"err"


def test_will_published_on_session_takeover_v311(broker):
    """3.1.1: a connection taken over by a new one with the same ClientId was not closed by a
    DISCONNECT, so its will is published (MQTT-3.1.4-2 with MQTT-3.1.2-8). mosquitto 2.0.11
    publishes it too."""
    with watcher(broker) as w:
        old = connected_client(broker, "taken", will=dict(topic="will/taken", payload=b"old"))
        new = connected_client(broker, "taken")
        try:
            old.expect_closed(3)
            assert recv_publish(w).payload == b"old"
            w.expect_nothing(0.3)
        finally:
            old.close()
            new.close()
        # the new connection had no will: closing it publishes nothing
        w.expect_nothing(0.5)


def test_will_v31_client(broker):
    """MQTT 3.1 (MQIsdp) clients' wills work the same way."""
    with watcher(broker) as w:
        c = connected_client(broker, "old31", version=3,
                             will=dict(topic="will/31", payload=b"v31", qos=1))
        c.close()
        p = recv_publish(w)
        assert p.payload == b"v31" and p.qos == 1


def test_will_topic_with_wildcard_rejected_MQTT_3_1_2_9(broker):
    """The Will Topic is a Topic Name: wildcards are not allowed (MQTT-3.1.2-9, MQTT-4.7.1-1);
    the connection is not accepted."""
    with RawClient(broker) as c:
        c.send(connect("wwild", will=dict(topic="will/#", payload=b"x")))
        got = c.expect_closed(3)
        assert not any(p.type == CONNACK and p.reason == 0 for p in got), got


def test_will_not_published_while_connected(broker):
    """The will is only published when the connection ends: PINGREQ traffic publishes nothing."""
    with watcher(broker) as w, connected_client(
            broker, "alive", will=dict(topic="will/alive", payload=b"x")) as c:
        c.send(pingreq())
        c.expect(PINGRESP)
        w.expect_nothing(0.3)
        c.send(disconnect())
        c.expect_closed(3)
        w.expect_nothing(0.3)
