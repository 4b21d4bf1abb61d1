"""Crash tests: the broker is killed with SIGKILL in the middle of a QoS 1 or QoS 2 load
from several publishers to persistent subscribers (one online, one offline), at several
points. After a restart on the same store every message whose PUBACK/PUBREC a publisher
received is delivered to every subscriber (at least once for QoS 1, exactly once for
QoS 2), and each retained topic holds the last acknowledged retained publish (or the one
sent after it, unacknowledged when the broker died)."""

import threading
import time

import pytest

from mqttraw import PUBLISH, RawClient, connect, subscribe, SUBACK, CONNACK
from persistkit import Publisher, Subscriber, crash, start

EXTRA = "max_queued_messages 100000\n"
NPUB = 3


def quiet(sub, idle=0.5, limit=15.0):
    """Wait until the subscriber got nothing new for `idle` seconds (bounded)."""
    deadline = time.monotonic() + limit
    with sub.cond:
        while time.monotonic() < deadline:
            n = len(sub.got)
            sub.cond.wait(idle)
            if len(sub.got) == n:
                return


def retained_now(port, filt):
    c = RawClient(port, timeout=5)
    c.send(connect("ret-check", clean=True))
    c.expect(CONNACK)
    c.send(subscribe(1, [(filt, 0)]))
    c.expect(SUBACK)
    got = {}
    for _ in range(1000):
        try:
            p = c.recv(0.5)
        except TimeoutError:
            break
        if p.type == PUBLISH:
            got[p.topic] = p.payload
    c.close()
    return got


@pytest.mark.parametrize("qos,kill_after,sync", [
    (1, 20, "always"), (1, 300, "always"), (1, 1200, "batch"),
    (2, 20, "always"), (2, 300, "always"), (2, 1200, "batch"), (2, 600, "none"),
])
def test_kill9_loses_no_acknowledged_message(tmp_path, qos, kill_after, sync):
    store = tmp_path / "store"
    store.mkdir()
    b = start(tmp_path, store, sync, EXTRA)
    online = Subscriber("sub-online", "load/#", qos)
    online.connect(b.port, subscribe_first=True)
    offline = Subscriber("sub-offline", "load/#", qos)
    offline.connect(b.port, subscribe_first=True)
    offline.disconnect()
    progress = threading.Condition()
    pubs = [Publisher(b.port, f"pub{i}", f"load/{i}", qos, count=4000, window=10,
                      retain_topic=f"ret/{i}", retain_every=40, progress=progress)
            for i in range(NPUB)]
    for p in pubs:
        p.start()
    with progress:
        reached = progress.wait_for(
            lambda: sum(p.total_acked() for p in pubs) >= kill_after, timeout=60)
    crash(b)
    for p in pubs:
        p.join(timeout=30)
    assert reached, "load did not reach the kill point"
    online.disconnect(clean=False)

    b2 = start(tmp_path, store, sync, EXTRA)
    acked = set()
    sent = set()
    for p in pubs:
        acked.update(p.acked)
        sent.update(p.sent)
    assert len(acked) >= kill_after
    ack1 = online.connect(b2.port)
    ack2 = offline.connect(b2.port)
    assert ack1.session_present and ack2.session_present
    for sub in (online, offline):
        missing = sub.wait_for(acked)
        assert not missing, f"{sub.client_id}: {len(missing)} acknowledged messages lost, " \
                            f"e.g. {sorted(missing)[:5]}"
    for sub in (online, offline):
        quiet(sub)
        assert set(sub.got) <= sent, "a message nobody published was delivered"
        if qos == 2:
            dups = {m for m in sub.got if sub.got.count(m) > 1}
            assert not dups, f"{sub.client_id}: QoS 2 delivered twice: {sorted(dups)[:5]}"
    retained = retained_now(b2.port, "ret/#")
    for i, p in enumerate(pubs):
        allowed = {p.retained_acked, p.retained_sent} - {None}
        if p.retained_acked is None:
            assert retained.get(f"ret/{i}") in allowed | {None}
        else:
            assert retained.get(f"ret/{i}") in allowed, \
                f"ret/{i}: {retained.get(f'ret/{i}')!r}, last acknowledged {p.retained_acked!r}"
    online.disconnect()
    offline.disconnect()
    b2.stop()
