"""MQTT 5.0 sessions and Will Messages: Session Expiry Interval (CONNECT and
DISCONNECT), session present, session takeover, Will Delay Interval, Will
properties, DISCONNECT 0x04 versus 0x00.

A few tests must let wall-clock time pass because the broker emits no event
when a session or message interval elapses; they sleep once, for the
shortest time that is certain to exceed the interval at the whole-second
granularity the spec uses (a 1 s interval can last up to 2 s on a broker
counting whole seconds, as mosquitto does), and say so where they do it.
"""

import time

import pytest

from mqttraw import (DISCONNECT, PUBACK, PUBLISH, SUBACK, RawClient, disconnect, publish,
                     subscribe, sub_opts, v5_client, v5_subscriber)

# Long enough for an interval of 1 s to have elapsed on a whole-second clock.
ONE_SECOND_ELAPSED = 2.2


def _bye(c):
    c.send(disconnect(0))
    c.expect_closed()


def test_session_expiry_absent_ends_session_at_disconnect_MQTT_3_1_2_23(broker):
    c, _ = v5_client(broker, "se-absent", clean=False)
    c.send(subscribe(1, [("se/absent", 1)], version=5))
    c.expect(SUBACK)
    _bye(c)
    c, ca = v5_client(broker, "se-absent", clean=False)
    assert ca.session_present is False, "Session Expiry 0/absent: session ends at close"
    c.close()


def test_session_kept_and_resumed_with_session_present_MQTT_3_2_2_3_MQTT_3_1_2_5(broker):
    c, _ = v5_client(broker, "se-kept", clean=False, properties=[("session_expiry", 60)])
    c.send(subscribe(1, [("se/kept", 1)], version=5))
    c.expect(SUBACK)
    c.close()  # network failure, not DISCONNECT
    p, _ = v5_client(broker, "se-kept-pub")
    p.send(publish("se/kept", b"while-away", qos=1, pid=1, version=5))
    assert p.expect(PUBACK).reason == 0x00
    c, ca = v5_client(broker, "se-kept", clean=False, properties=[("session_expiry", 60)])
    assert ca.reason == 0 and ca.session_present is True
    m = c.expect(PUBLISH)
    assert (m.topic, m.payload, m.qos) == ("se/kept", b"while-away", 1)
    c.close()
    p.close()


def test_clean_start_discards_existing_session_MQTT_3_1_2_4_MQTT_3_2_2_2(broker):
    c, _ = v5_client(broker, "se-clean", clean=False, properties=[("session_expiry", 60)])
    c.send(subscribe(1, [("se/clean", 1)], version=5))
    c.expect(SUBACK)
    _bye(c)
    p, _ = v5_client(broker, "se-clean-pub")
    p.send(publish("se/clean", b"queued", qos=1, pid=1, version=5))
    p.expect(PUBACK)
    c, ca = v5_client(broker, "se-clean", clean=True, properties=[("session_expiry", 60)])
    assert ca.session_present is False
    c.expect_nothing(0.3)  # the queued message went with the old session
    p.send(publish("se/clean", b"after", qos=1, pid=2, version=5))
    p.expect(PUBACK)
    c.expect_nothing(0.3)  # and so did the subscription
    c.close()
    p.close()


def test_disconnect_session_expiry_zero_discards_session_3_14_2_2_2(broker):
    c, _ = v5_client(broker, "se-dz", clean=False, properties=[("session_expiry", 60)])
    c.send(subscribe(1, [("se/dz", 1)], version=5))
    c.expect(SUBACK)
    c.send(disconnect(0, [("session_expiry", 0)]))
    c.expect_closed()
    c, ca = v5_client(broker, "se-dz", clean=False, properties=[("session_expiry", 60)])
    assert ca.session_present is False
    c.close()


def test_disconnect_session_expiry_from_zero_is_protocol_error_3_14_2_2_2(broker):
    # CONNECT had Session Expiry 0; setting a non-zero value on DISCONNECT is
    # a Protocol Error: DISCONNECT 0x82 from the server, which must not carry
    # a Session Expiry Interval (MQTT-3.14.2-2), and the session is not kept.
    c, _ = v5_client(broker, "se-zero", clean=False)
    c.send(subscribe(1, [("se/zero", 1)], version=5))
    c.expect(SUBACK)
    c.send(disconnect(0, [("session_expiry", 300)]))
    got = c.expect_closed()
    assert [(p.type, p.reason) for p in got] == [(DISCONNECT, 0x82)], got
    assert "session_expiry" not in got[0].props, "MQTT-3.14.2-2"
    c, ca = v5_client(broker, "se-zero", clean=False)
    assert ca.session_present is False
    c.close()


def test_session_expires_but_0xffffffff_from_disconnect_never_does_MQTT_4_1_0_2(broker):
    # Two sessions with a 1 s expiry; the second one's DISCONNECT raises it
    # to 0xFFFFFFFF (never expires). After the interval only that one is left.
    a, _ = v5_client(broker, "se-short", clean=False, properties=[("session_expiry", 1)])
    _bye(a)
    b, _ = v5_client(broker, "se-forever", clean=False, properties=[("session_expiry", 1)])
    b.send(disconnect(0, [("session_expiry", 0xFFFFFFFF)]))
    b.expect_closed()
    time.sleep(ONE_SECOND_ELAPSED)  # no broker event marks a session's expiry
    a, ca = v5_client(broker, "se-short", clean=False, properties=[("session_expiry", 1)])
    assert ca.session_present is False, "1 s session outlived its expiry"
    b, cb = v5_client(broker, "se-forever", clean=False)
    assert cb.session_present is True, "0xFFFFFFFF session expired"
    a.close()
    b.close()


def test_session_takeover_closes_first_connection_MQTT_3_1_4_3(broker):
    first, _ = v5_client(broker, "takeover", clean=False, properties=[("session_expiry", 60)])
    first.send(subscribe(1, [("takeover/t", 1)], version=5))
    first.expect(SUBACK)
    second, ca = v5_client(broker, "takeover", clean=False,
                           properties=[("session_expiry", 60)])
    assert ca.reason == 0 and ca.session_present is True
    got = first.expect_closed()
    assert all(p.type == DISCONNECT and p.reason == 0x8E for p in got), got
    # The session (and its subscription) now belongs to the second connection.
    p, _ = v5_client(broker, "takeover-pub")
    p.send(publish("takeover/t", b"x", qos=1, pid=1, version=5))
    assert second.expect(PUBLISH).payload == b"x"
    for c in (second, p):
        c.close()


@pytest.mark.hato_only("mosquitto 2.0.11 closes the old connection without DISCONNECT 0x8E")
def test_session_takeover_sends_disconnect_0x8e_MQTT_3_1_4_3(broker):
    first, _ = v5_client(broker, "takeover2")
    second, _ = v5_client(broker, "takeover2")
    got = first.expect_closed()
    assert [(p.type, p.reason) for p in got] == [(DISCONNECT, 0x8E)], got
    assert "session_expiry" not in got[0].props, "MQTT-3.14.2-2"
    second.close()


# --- Will Messages -----------------------------------------------------------

def _will(topic, payload=b"gone", delay=None, props=(), **kw):
    properties = list(props)
    if delay is not None:
        properties.insert(0, ("will_delay", delay))
    return dict(topic=topic, payload=payload, properties=properties, **kw)


def test_will_properties_forwarded_in_order_MQTT_3_1_3_10(broker):
    s = v5_subscriber(broker, "will-props-sub", [("wp/#", sub_opts(1))])
    w, _ = v5_client(broker, "will-props", will=_will("wp/t", b"\xe2\x9c\x93", qos=1, props=[
        ("payload_format", 1), ("content_type", "text/plain"),
        ("response_topic", "wp/reply"), ("correlation_data", b"\x00\xffid"),
        ("user_property", ("k", "1")), ("user_property", ("a", "2")),
        ("user_property", ("k", "3"))]))
    w.close()  # abnormal close: the will is published
    m = s.expect(PUBLISH)
    assert (m.topic, m.payload, m.qos, m.retain) == ("wp/t", b"\xe2\x9c\x93", 1, False)
    assert m.props.get("payload_format") == 1
    assert m.props.get("content_type") == "text/plain"
    assert m.props.get("response_topic") == "wp/reply"
    assert m.props.get("correlation_data") == b"\x00\xffid"
    assert m.user_props == [("k", "1"), ("a", "2"), ("k", "3")]
    assert "will_delay" not in m.props
    s.close()


def test_will_delay_defers_will_MQTT_3_1_2_8(broker):
    s = v5_subscriber(broker, "wd-sub", [("wd/#", 0)])
    w, _ = v5_client(broker, "wd", will=_will("wd/t", delay=1),
                     properties=[("session_expiry", 30)])
    t0 = time.monotonic()
    w.close()
    s.expect_nothing(0.5)  # not at once: the delay is 1 s
    m = s.expect(PUBLISH, timeout=4)
    assert m.topic == "wd/t" and m.payload == b"gone"
    assert time.monotonic() - t0 >= 0.9
    s.close()


def test_no_will_when_client_reconnects_within_delay_MQTT_3_1_3_9(broker):
    # Two clients with the same Will Delay lose their connection together;
    # one reconnects at once. The other one's will is the event that proves
    # the delay has passed; the reconnected one's will must never come.
    s = v5_subscriber(broker, "wr-sub", [("wr/#", 0)])
    back, _ = v5_client(broker, "wr-back", will=_will("wr/back", delay=1),
                        properties=[("session_expiry", 30)])
    ctrl, _ = v5_client(broker, "wr-ctrl", will=_will("wr/ctrl", delay=1),
                        properties=[("session_expiry", 30)])
    back.close()
    ctrl.close()
    back, ca = v5_client(broker, "wr-back", clean=False, properties=[("session_expiry", 30)])
    assert ca.session_present
    m = s.expect(PUBLISH, timeout=4)
    assert m.topic == "wr/ctrl", f"will of the reconnected client was sent: {m.topic}"
    s.expect_nothing(0.5)
    back.close()
    s.close()


def test_will_published_when_session_ends_before_delay_MQTT_3_1_2_8(broker):
    # Will Delay 30 s but Session Expiry 1 s: the will goes when the session
    # ends, which a whole-second clock may put up to 2 s after the close.
    s = v5_subscriber(broker, "wse-sub", [("wse/#", 0)])
    w, _ = v5_client(broker, "wse", will=_will("wse/t", delay=30),
                     properties=[("session_expiry", 1)])
    w.close()
    m = s.expect(PUBLISH, timeout=4)
    assert m.topic == "wse/t"
    s.close()


def test_disconnect_with_will_0x04_publishes_will_3_14_2_1(broker):
    s = v5_subscriber(broker, "w04-sub", [("w04/#", 0)])
    w, _ = v5_client(broker, "w04", will=_will("w04/t", b"by-request"))
    w.send(disconnect(0x04))
    m = s.expect(PUBLISH)
    assert (m.topic, m.payload) == ("w04/t", b"by-request")
    s.close()


def test_normal_disconnect_discards_will_MQTT_3_14_4_3(broker):
    s = v5_subscriber(broker, "w00-sub", [("w00/#", 0)])
    w, _ = v5_client(broker, "w00", will=_will("w00/t"))
    w.send(disconnect(0x00))
    w.expect_closed()
    s.expect_nothing(0.5)
    s.close()


def test_normal_disconnect_discards_delayed_will_MQTT_3_1_2_10(broker):
    # With a Will Delay and a kept session, DISCONNECT 0x00 still deletes the
    # will: nothing is published once the delay (and the session) would end.
    s = v5_subscriber(broker, "w00d-sub", [("w00d/#", 0)])
    w, _ = v5_client(broker, "w00d", will=_will("w00d/t", delay=1),
                     properties=[("session_expiry", 1)])
    ctrl, _ = v5_client(broker, "w00d-ctrl", will=_will("w00d/ctrl", delay=1),
                        properties=[("session_expiry", 1)])
    w.send(disconnect(0x00))
    w.expect_closed()
    ctrl.close()
    m = s.expect(PUBLISH, timeout=4)  # the control will: the delay has passed
    assert m.topic == "w00d/ctrl"
    s.expect_nothing(0.5)
    s.close()


def test_will_retain_flag_and_qos_MQTT_3_1_2_15(broker):
    live = v5_subscriber(broker, "wret-live", [("wret/t", sub_opts(1, retain_as_published=True))])
    w, _ = v5_client(broker, "wret", will=_will("wret/t", b"retained-will", qos=1, retain=True))
    w.close()
    m = live.expect(PUBLISH)
    assert (m.payload, m.retain, m.qos) == (b"retained-will", True, 1)
    # A later subscriber gets it too: the will was stored as a retained message.
    late = v5_subscriber(broker, "wret-late", [("wret/t", sub_opts(1))])
    m = late.expect(PUBLISH)
    assert (m.payload, m.retain) == (b"retained-will", True)
    live.close()
    late.close()
