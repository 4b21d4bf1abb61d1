"""Keep alive and PINGREQ/PINGRESP for MQTT 3.1.1 (section 3.1.2.10)."""

import time

import pytest

from mqttraw import (CONNACK, PINGRESP, RawClient, connect, connected_client, pingreq, publish)

# How long a keepalive-1 client may take to be dropped (1.5 s by the spec, plus slack).
KA_WAIT = 4
MOSQ_KA = ("mosquitto 2.0.11 checks keep-alive only every ~5 s: a keepalive 1 client is dropped "
           "after ~6 s, not within 1.5 s")


def test_pingreq_pingresp_exact_MQTT_3_12_4_1(broker):
    """PINGREQ is answered by PINGRESP d0 00 (MQTT-3.12.4-1)."""
    with connected_client(broker, "ping") as c:
        for _ in range(3):
            c.send(pingreq())
            p = c.expect(PINGRESP)
            assert p.flags == 0 and p.body == b""


@pytest.mark.hato_only(MOSQ_KA)
def test_keepalive_timeout_closes_connection_MQTT_3_1_2_24(broker):
    """No packet for 1.5 x keepalive: the server disconnects (MQTT-3.1.2-24), not before the
    keep alive elapsed."""
    with connected_client(broker, "idle", keepalive=1) as c:
        t0 = time.monotonic()
        assert c.expect_closed(KA_WAIT) == []
        assert time.monotonic() - t0 >= 1.0


@pytest.mark.hato_only(MOSQ_KA)
def test_keepalive_2_closed_between_2_and_4_s_MQTT_3_1_2_24(broker):
    """keepalive 2: still open at 2 s (within the keep alive), closed by ~3 s (MQTT-3.1.2-24)."""
    with connected_client(broker, "idle2", keepalive=2) as c:
        t0 = time.monotonic()
        assert c.expect_closed(KA_WAIT + 1) == []
        assert time.monotonic() - t0 >= 2.0


@pytest.mark.hato_only(MOSQ_KA)
def test_pingreq_keeps_connection_alive_MQTT_3_1_2_23(broker):
    """PINGREQs every 0.5 s keep a keepalive 1 connection open for 2 s, beyond 1.5 x keepalive
    (MQTT-3.1.2-23); once they stop, the server disconnects (MQTT-3.1.2-24)."""
    with connected_client(broker, "pinger", keepalive=1) as c:
        for _ in range(4):
            c.expect_nothing(0.5)
            c.send(pingreq())
            c.expect(PINGRESP)
        assert c.expect_closed(KA_WAIT) == []


def test_any_packet_resets_keepalive_MQTT_3_1_2_23(broker):
    """Any control packet from the client (here QoS 0 PUBLISH) counts as activity (MQTT-3.1.2-23)."""
    with connected_client(broker, "talker", keepalive=1) as c:
        for i in range(6):
            c.expect_nothing(0.5)
            c.send(publish("ka/t", b"%d" % i))
        c.send(pingreq())
        c.expect(PINGRESP)


def test_keepalive_zero_means_no_timeout_MQTT_3_1_2_10(broker):
    """Keep Alive 0 turns the mechanism off: 2 s of silence do not close the connection."""
    with connected_client(broker, "forever", keepalive=0) as c:
        c.expect_nothing(2)
        c.send(pingreq())
        c.expect(PINGRESP)


@pytest.mark.hato_only("mosquitto 2.0.11 accepts a 3.1.1 keepalive above max_keepalive; later "
                       "mosquitto (and its documentation) refuse it with CONNACK 0x02, as hato does")
def test_max_keepalive_rejects_larger_v311(broker_factory):
    """max_keepalive 10: a 3.1.1 client asking for keepalive 60 cannot be told a server keep alive,
    so it is refused with CONNACK 0x02 (mosquitto 2.0 documented behaviour); 10 is accepted."""
    b = broker_factory("max_keepalive 10\n")
    with RawClient(b) as c:
        c.send(connect("big", keepalive=60))
        got = c.expect_closed(3)
        assert len(got) == 1 and got[0].type == CONNACK and got[0].body == b"\x00\x02", got
    with connected_client(b, "ok", keepalive=10) as c:
        c.send(pingreq())
        c.expect(PINGRESP)


@pytest.mark.hato_only(MOSQ_KA)
def test_short_keepalive_accepted_and_enforced_with_max_keepalive(broker_factory):
    """With max_keepalive 10 a keepalive 1 client is accepted and still dropped after ~1.5 s."""
    b = broker_factory("max_keepalive 10\n")
    with connected_client(b, "short", keepalive=1) as c:
        assert c.expect_closed(KA_WAIT) == []
