"""Acknowledgements out of order in a full in-flight window (session.c keeps
the window as a moving start over an array: the oldest acknowledged moves
the start, one in the middle closes the gap). Whatever the order of the
PUBACKs, every message arrives once, in the order published (MQTT-4.6.0-6:
QoS 1 messages to one subscriber in order), and on reconnection exactly the
unacknowledged ones are sent again, with DUP, in their original order
(MQTT-4.4.0-1, MQTT-3.3.1-1). Runs against hato and against mosquitto."""

from mqttraw import PUBLISH, ack, PUBACK, connected_client, publish_ok, subscribe_ok

WINDOW = 10
TOTAL = 100


def scrambled(pids):
    """Odd positions first, then the even ones from the last: every kind of
    hole (oldest, newest, middle)."""
    return pids[1::2] + pids[0::2][::-1]


def test_out_of_order_acks_keep_order_and_resend_only_the_unacked(broker_factory):
    b = broker_factory(f"max_inflight_messages {WINDOW}\nmax_queued_messages 1000\n")
    sub = connected_client(b, "acks-sub", clean=False)
    subscribe_ok(sub, 1, [("io/t", 1)])
    pub = connected_client(b, "acks-pub")
    for i in range(TOTAL):
        publish_ok(pub, "io/t", b"m%03d" % i, qos=1, pid=i % 60000 + 1)

    got, held = [], []
    keep = set()  # left unacknowledged on purpose, resent after reconnection
    while len(got) < TOTAL:
        p = sub.expect(PUBLISH)
        assert p.qos == 1 and not (p.flags & 0x08), p
        got.append(p.payload)
        held.append((p.pid, p.payload))
        if len(held) == WINDOW or len(got) == TOTAL:
            order = scrambled(held)
            if len(got) == TOTAL:  # the last window: keep three, scattered
                keep = {order[0], order[4], order[-1]}
            sub.send(b"".join(ack(PUBACK, pid) for pid, pl in order if (pid, pl) not in keep))
            held = []
    assert got == [b"m%03d" % i for i in range(TOTAL)]

    sub.close()
    sub = connected_client(b, "acks-sub", clean=False)
    assert sub.connack.body[0] & 1, "session present"  # MQTT-3.2.2-2
    expected = [pl for pid, pl in sorted(keep, key=lambda k: k[1])]
    again = []
    for _ in expected:
        p = sub.expect(PUBLISH)
        assert p.flags & 0x08, f"resent without DUP: {p!r}"  # MQTT-3.3.1-1
        again.append(p.payload)
        sub.send(ack(PUBACK, p.pid))
    assert again == expected
    sub.expect_nothing()
