"""A subscriber's standing backlog (issue 15, part 3).

With back-pressure off, a subscriber that reads more slowly than it is
written to keeps a backlog in the broker's output buffer, drained a little
at every write readiness. The broker moves the unsent bytes to the start of
that buffer once half of it was sent (worker.c, wbuf_compact) and keeps a
drained buffer for reuse: whatever the buffer's history, every message
must come out whole, once and in order (MQTT-4.6.0-6: messages of one topic
are delivered in the order they were published), the payloads sent by
reference (1 KiB and more) interleaved with copied ones.

Bounded: a fixed number of messages, every read with a deadline, no sleeps.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hostile import small_rcvbuf_socket  # noqa: E402
from mqttraw import CONNACK, PUBLISH, SUBACK, RawClient, connect, publish, subscribe  # noqa: E402

ROUNDS = 8
PER_ROUND = 2000
SIZES = (7, 1500, 300, 64, 4000, 1023, 1024, 90)  # both sides of the by-reference size


def payload(i):
    """Message i: its number, then filler that depends on it."""
    head = b"%08d:" % i
    n = SIZES[i % len(SIZES)]
    fill = bytes((i * 7 + k) & 0xFF for k in range(max(0, n - len(head))))
    return (head + fill)[:max(n, len(head))]


def client_on(sock):
    c = RawClient.__new__(RawClient)
    c.version, c.timeout, c.sock, c.buf = 4, 20.0, sock, bytearray()
    return c


@pytest.mark.hato_only("back-pressure turned off with hato's output_soft_limit")
def test_backlog_drained_while_written_keeps_every_message(broker_factory):
    # Back-pressure off (soft limit at max_output_buffer), no output cap: the
    # backlog stays in the broker's buffer.
    b = broker_factory("max_output_buffer 0\noutput_soft_limit 1073741824\n"
                       "output_stall_timeout 0\n")
    sub = client_on(small_rcvbuf_socket(b.host, b.port, size=4096, timeout=20.0))
    sub.send(connect("backlog-sub"))
    assert sub.expect(CONNACK).reason == 0
    sub.send(subscribe(1, [("bl/#", 0)]))
    sub.expect(SUBACK)
    pub = RawClient(b, timeout=20.0)
    pub.send(connect("backlog-pub"))
    pub.expect(CONNACK)

    sent = got = 0
    for _ in range(ROUNDS):
        # Write a round, then read only half as much: the backlog grows and
        # is drained from its front while new messages are appended.
        pub.send(b"".join(publish("bl/x", payload(i)) for i in range(sent, sent + PER_ROUND)))
        sent += PER_ROUND
        for _ in range(PER_ROUND // 2):
            p = sub.expect(PUBLISH)
            assert p.topic == "bl/x"
            assert p.payload == payload(got), f"message {got} damaged or out of order"
            got += 1
    while got < sent:
        p = sub.expect(PUBLISH)
        assert p.payload == payload(got), f"message {got} damaged or out of order"
        got += 1
    assert got == ROUNDS * PER_ROUND
