"""Leak check at shutdown (issue 7): the broker frees everything on SIGTERM.

Under the ASan build LeakSanitizer runs when the broker exits; the broker
fixtures stop every broker with SIGTERM and fail the test when its output
holds a sanitizer report or its exit status is not 0 (conftest
Broker.check_clean). So every integration test is a leak check of the state
it leaves behind; the test here leaves as much state as it can at once, and
the last one checks that the harness really catches a report.
"""

import os
import stat
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import conftest  # noqa: E402
from mqttraw import (PUBACK, PUBLISH, PUBREC, SUBACK, RawClient, connect,  # noqa: E402
                     connected_client, publish, subscribe, v5_client)


def test_sigterm_with_busy_state_exits_clean(broker_factory):
    """Offline persistent sessions with queued messages, unacknowledged QoS 1
    and QoS 2 in both directions, retained messages, a pending delayed will,
    shared subscriptions, topic aliases, half-read packets and a connection
    that never sent CONNECT: all are freed at SIGTERM (no LeakSanitizer
    report, exit status 0; checked when the fixture stops the broker)."""
    b = broker_factory("max_queued_messages 100\nmax_inflight_messages 5\n")
    # Offline persistent session with a queue.
    off = connected_client(b, "offline", clean=False)
    off.send(subscribe(1, [("s/#", 2), ("$share/g/s/#", 1)]))
    off.expect(SUBACK)
    off.close()
    # Online subscriber that never acknowledges (in flight both QoS).
    lazy = connected_client(b, "lazy", clean=False)
    lazy.send(subscribe(1, [("s/#", 2)]))
    lazy.expect(SUBACK)
    # A v5 client with a delayed will, aliases, and a QoS 2 it never releases.
    v5, _ = v5_client(b, "v5", properties=[("session_expiry", 3600)],
                      will=dict(topic="s/will", payload=b"w", properties=[("will_delay", 600)]))
    v5.send(publish("s/a", b"alias", version=5, properties=[("topic_alias", 1)]))
    v5.send(publish("s/q2", b"held", qos=2, pid=9, version=5))
    assert v5.expect(PUBREC).pid == 9
    pub = connected_client(b, "pub")
    for i in range(30):
        pub.send(publish(f"s/{i}", b"m%d" % i, qos=1 + i % 2, pid=i + 1, retain=i % 3 == 0))
        pub.expect(PUBACK if i % 2 == 0 else PUBREC)
    lazy.expect(PUBLISH)
    v5.close()  # delayed will now pending
    # Half a packet, and a connection without CONNECT.
    half = connected_client(b, "half")
    half.send(publish("s/x", b"y" * 1000)[:500])
    silent = RawClient(b)
    partial = RawClient(b)
    partial.send(connect("partial")[:5])
    b.stop()  # raises on a sanitizer report or a non-zero exit status
    assert "terminating" in b.log and "Client v5" in b.log
    for c in (lazy, pub, half, silent, partial):
        c.close()


def test_harness_fails_on_sanitizer_report(tmp_path, monkeypatch):
    """The leak check is only as good as the harness: a 'broker' that prints a
    LeakSanitizer report when stopped must fail check_clean."""
    fake = tmp_path / "fake-broker"
    fake.write_text("#!/bin/sh\n"
                    "trap 'echo \"==1==ERROR: LeakSanitizer: detected memory leaks\"; exit 0' TERM\n"
                    "echo 'hato version 0 running'\n"
                    "while :; do sleep 0.05; done\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(conftest, "HATO_BIN", str(fake))
    monkeypatch.setattr(conftest, "REFERENCE", "hato")
    b = conftest.Broker(tmp_path)
    with pytest.raises(AssertionError, match="sanitizer report"):
        b.stop()
