"""SUBACK means subscribed on every worker (issue 14): once a client has its
SUBACK, a PUBLISH that any connection on any worker thread sends afterwards
reaches it. hato has one subscription tree shared by the workers (a
read-write lock), so the subscription is in place for all of them before
the SUBACK is written; this is the regression test that keeps it so
(plugins, persistence and clustering add work between the two).

Sessions are spread over workers by a seeded hash of the client id, so the
test connects publishers until $SYS/broker/hato/worker/N/clients shows at
least one publisher on every worker (the subscriber's own worker included),
then runs many rounds: the subscriber subscribes to a fresh topic and, the
moment its SUBACK is read, every publisher publishes to that topic. The
subscriber must receive every message of every round: 0 misses.
"""

import re
import time

import pytest

from mqttraw import PUBLISH, SUBACK, RawClient, connected_client, publish, subscribe

pytestmark = pytest.mark.hato_only("worker threads and their $SYS counters are hato's")

ROUNDS = 3000
WORKER_CLIENTS = re.compile(r"^\$SYS/broker/hato/worker/(\d+)/clients$")


def wait_counts(watcher, counts, total, nworkers, timeout=15):
    """Read $SYS worker/N/clients updates into counts until all nworkers are
    known and they add up to total; return counts."""
    deadline = time.monotonic() + timeout
    while not (len(counts) == nworkers and sum(counts.values()) == total):
        p = watcher.recv(max(0.05, deadline - time.monotonic()))
        if p.type == PUBLISH:
            w = WORKER_CLIENTS.match(p.topic)
            if w:
                counts[int(w.group(1))] = int(p.payload)
    return dict(counts)


@pytest.mark.parametrize("threads", [2, 4])
def test_publish_after_suback_reaches_subscriber_from_every_worker(broker_factory, threads):
    # set_tcp_nodelay: without it each round waits for a delayed ACK (40 ms,
    # Nagle on the SUBACK then PUBLISH writes), which slows, not changes, the test.
    b = broker_factory(f"threads {threads}\nsys_interval 1\nset_tcp_nodelay true\n")
    watcher = connected_client(b, "watcher")
    watcher.send(subscribe(1, [("$SYS/broker/hato/worker/+/clients", 0)]))
    watcher.expect(SUBACK)
    sub = connected_client(b, "subscriber")
    counts = {}
    base = wait_counts(watcher, counts, 2, threads)
    pubs = []
    per_worker = {}
    while len(pubs) < 96:
        for _ in range(8):
            pubs.append(connected_client(b, f"pub-{threads}-{len(pubs)}"))
        now = wait_counts(watcher, counts, 2 + len(pubs), threads)
        per_worker = {n: now[n] - base.get(n, 0) for n in range(threads)}
        if all(per_worker.values()):
            break
    assert all(per_worker.values()), f"publishers per worker: {per_worker}"
    watcher.close()

    misses = []
    rounds = 0
    deadline = time.monotonic() + 120
    for i in range(ROUNDS):
        if time.monotonic() > deadline:
            break
        topic = f"fresh/{threads}/{i}"
        sub.send(subscribe(i % 65535 + 1, [(topic, 0)]))
        ack = sub.expect(SUBACK)
        assert ack.codes == [0]
        data = publish(topic, b"r%d" % i)
        for p in pubs:  # as soon as the SUBACK is read
            p.send(data)
        got = 0
        try:
            for _ in range(len(pubs)):
                m = sub.recv(timeout=5)
                assert m.type == PUBLISH and m.topic == topic, m
                got += 1
        except TimeoutError:
            pass
        if got != len(pubs):
            misses.append((i, len(pubs) - got))
        rounds += 1
    assert misses == [], f"{len(misses)} rounds with misses of {rounds}: {misses[:10]}"
    assert rounds >= 100, f"only {rounds} rounds in the time bound"
    for p in pubs:
        p.close()
    sub.close()
