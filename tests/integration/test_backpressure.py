"""Back-pressure (issue 15, part 1; docs/limits.md#back-pressure).

A subscriber that reads but falls behind holds back the publishers that feed
it: the broker stops reading their sockets (TCP pushes back) until its
output drains. One that makes no progress for output_stall_timeout is
stalled: it holds no one back, its QoS 0 is dropped and counted, it is
logged once. Back-pressure never deadlocks and never stops the broker from
serving other clients; broker-made messages ($SYS, wills) are never held.

Rules, not timings: events are awaited with deadlines, loops are bounded in
count and time, nothing sleeps.
"""

import os
import re
import select
import socket
import struct
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hostile import small_rcvbuf_socket, stats  # noqa: E402
from mqttraw import (CONNACK, PUBACK, PUBLISH, SUBACK, RawClient, ack, connect,  # noqa: E402
                     connected_client, pingreq, publish, subscribe)

pytestmark = pytest.mark.hato_only("hato's back-pressure directives and log lines")

PINGRESP = 13
SIZE = 1000  # payload bytes


def raw_on(sock, version=4):
    c = RawClient.__new__(RawClient)
    c.version, c.timeout, c.sock, c.buf = version, 10.0, sock, bytearray()
    return c


def client_on(b, cid, sock=None, filters=(), clean=True, will=None):
    c = raw_on(sock) if sock else RawClient(b, timeout=10.0)
    c.send(connect(cid, clean=clean, will=will))
    c.expect(CONNACK)
    if filters:
        c.send(subscribe(1, list(filters)))
        c.expect(SUBACK)
    return c


def stalled_sub(b, cid, filters):
    """A subscriber that never reads, with a small receive buffer."""
    return client_on(b, cid, small_rcvbuf_socket(b.host, b.port, size=4096), filters)


def flood(topic, n, qos=0, start=0):
    """n PUBLISH packets numbered start.. (the number ends the payload)."""
    out = []
    for i in range(start, start + n):
        body = b"p" * (SIZE - 8) + b"%08d" % i
        out.append(publish(topic, body, qos=qos, pid=(i % 65535) + 1 if qos else None))
    return out


def seqno(p):
    return int(p.body[-8:])


def pushed_back(sock, data, quiet=0.5, limit=64 << 20):
    """Send data non-blocking until the socket takes no more and stays
    unwritable for `quiet` seconds (the broker is not reading it). Returns
    the bytes sent, or None if everything went (no push-back)."""
    sock.setblocking(False)
    sent = 0
    try:
        while sent < len(data) and sent < limit:
            try:
                sent += sock.send(data[sent:sent + 65536])
                continue
            except BlockingIOError:
                pass
            _, w, _ = select.select([], [sock], [], quiet)
            if not w:
                return sent
        return None
    finally:
        sock.setblocking(True)


def send_rest(sock, data, sent, deadline):
    """Send data[sent:] (blocking, bounded by deadline)."""
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    sock.sendall(data[sent:])


class Reader(threading.Thread):
    """Reads PUBLISH packets from a raw client in bounded chunks, once
    `go` is set, acknowledging QoS 1; records sequence numbers."""

    def __init__(self, c, want, go=None, chunk=4096, deadline=60):
        super().__init__(daemon=True)
        self.c, self.want, self.chunk = c, want, chunk
        self.go = go or threading.Event()
        self.got, self.dups, self.error = [], 0, None
        self.deadline = time.monotonic() + deadline

    def run(self):
        try:
            if not self.go.wait(max(0, self.deadline - time.monotonic())):
                return
            seen = set()
            while len(self.got) < self.want and time.monotonic() < self.deadline:
                p = self.c.recv(timeout=max(0.1, self.deadline - time.monotonic()))
                if p.type != PUBLISH:
                    continue
                if p.qos:
                    self.c.send(ack(PUBACK, p.pid))
                n = seqno(p)
                if n in seen:
                    self.dups += 1
                seen.add(n)
                self.got.append(n)
        except Exception as e:  # reported by the test
            self.error = e


def served(b, cid="other"):
    """Another client is served at once: CONNECT, PINGREQ, a publish to itself."""
    c = client_on(b, cid, filters=[("other/" + cid, 0)])
    c.send(pingreq())
    c.expect(PINGRESP, timeout=5)
    c.send(publish("other/" + cid, b"hello"))
    p = c.expect(PUBLISH, timeout=5)
    assert p.body.endswith(b"hello")
    c.close()


def take_packets(buf):
    """Complete packets at the start of buf (removed from it): (type, body)."""
    out = []
    while True:
        ln, i, mult = 0, 1, 1
        while i < len(buf) and buf[i] & 0x80 and i < 5:
            ln += (buf[i] & 0x7F) * mult
            mult *= 128
            i += 1
        if i >= len(buf):
            return out
        ln += (buf[i] & 0x7F) * mult
        i += 1
        if len(buf) < i + ln:
            return out
        out.append((buf[0] >> 4, bytes(buf[i:i + ln])))
        del buf[:i + ln]


def topic_of(p):
    n = struct.unpack_from("!H", p.body, 0)[0]
    return p.body[2:2 + n].decode()


# ---- a healthy slow subscriber beside a stalled one ----------------------------

CFG = ("threads 2\nmax_output_buffer 4194304\noutput_soft_limit 262144\n"
       "output_stall_timeout 3\nmax_queued_messages 100000\n")


def test_slow_subscriber_gets_every_qos0_stalled_is_cut_loose(broker_factory):
    """A publisher floods 16 MB of QoS 0 at a topic with two subscribers: one
    never reads (small receive buffer), one reads in 4 KiB chunks. While
    neither reads, the publisher's socket is pushed back: it takes no more
    bytes (the broker stops reading it). The non-reader is classed stalled
    after output_stall_timeout (logged once, its QoS 0 dropped and counted),
    and from then on only the reading subscriber holds the publisher back:
    it receives every message, once, in order."""
    b = broker_factory(CFG)
    n = 16000
    st = stalled_sub(b, "stalled0", [("flood/#", 0)])
    slow = client_on(b, "slow0", filters=[("flood/#", 0)])
    reader = Reader(slow, n)
    reader.start()
    pub = client_on(b, "pub0")
    data = b"".join(flood("flood/a", n))
    mark = b.mark()
    sent = pushed_back(pub.sock, data)
    assert sent is not None, "the publisher was never pushed back: all 16 MB read"
    assert sent < len(data)
    served(b, "o1")  # the broker serves others while the publisher waits
    reader.go.set()
    send_rest(pub.sock, data, sent, time.monotonic() + 60)
    reader.join(60)
    assert reader.error is None, reader.error
    assert reader.got == list(range(n)), f"{len(reader.got)} of {n}, dups {reader.dups}"
    line = b.wait_log(r"Client stalled0 is stalled", start=mark)
    assert "no longer holds back publishers" in line
    assert len(re.findall(r"Client stalled0 is stalled", b.log)) == 1  # once per episode
    assert "Client slow0 is stalled" not in b.log
    assert stats(b)["dropped"] > 0  # the stalled one's QoS 0, counted
    st.close()


def test_qos1_nothing_lost_duplicated_or_reordered(broker_factory):
    """The same flood at QoS 1 (the publisher reads its PUBACKs): the
    reading subscriber receives every message once and in order; the
    stalled one's messages queue within its limits (max_queued_messages,
    default 1000), and the publisher gets every PUBACK."""
    b = broker_factory(CFG.replace("max_queued_messages 100000\n", ""))
    n = 12000
    st = stalled_sub(b, "stalled1", [("q/#", 1)])
    slow = client_on(b, "slow1", filters=[("q/#", 1)])
    reader = Reader(slow, n)
    reader.start()
    pub = client_on(b, "pub1")
    acked = []

    def read_acks():
        deadline = time.monotonic() + 60
        while len(acked) < n and time.monotonic() < deadline:
            p = pub.recv(timeout=max(0.1, deadline - time.monotonic()))
            if p.type == PUBACK:
                acked.append(p.pid)

    t = threading.Thread(target=read_acks, daemon=True)
    t.start()
    data = b"".join(flood("q/a", n, qos=1))
    sent = pushed_back(pub.sock, data)
    assert sent is not None and sent < len(data), "the publisher was never pushed back"
    reader.go.set()
    send_rest(pub.sock, data, sent, time.monotonic() + 60)
    reader.join(60)
    t.join(60)
    assert reader.error is None, (reader.error, len(reader.got), len(acked))
    assert reader.dups == 0
    assert reader.got == list(range(n)), f"{len(reader.got)} of {n}"
    assert len(acked) == n
    st.close()


# ---- no deadlock --------------------------------------------------------------

DL_CFG = ("threads 2\noutput_soft_limit 65536\noutput_stall_timeout 1\n")


def test_publisher_subscribed_to_itself(broker_factory):
    """A publisher that subscribes to its own topic and reads slowly holds
    itself back (it is its own slow subscriber): its flood still completes,
    every message comes back to it once and in order, and the broker serves
    another client in the meantime."""
    b = broker_factory(DL_CFG.replace("output_stall_timeout 1", "output_stall_timeout 10"))
    n = 8000
    c = client_on(b, "self0", filters=[("me/#", 0)])
    data = b"".join(flood("me/x", n))
    got, buf = [], bytearray()
    sent = 0
    blocked = False
    c.sock.setblocking(False)
    deadline = time.monotonic() + 60
    checked = False
    while len(got) < n and time.monotonic() < deadline:
        want_w = [c.sock] if sent < len(data) else []
        r, w, _ = select.select([c.sock], want_w, [], 1.0)
        if w:
            try:
                sent += c.sock.send(data[sent:sent + 65536])
            except BlockingIOError:
                pass
        elif want_w and not r:
            blocked = True
        if r:
            chunk = c.sock.recv(4096)
            assert chunk, "closed by the broker"
            buf += chunk
            for ptype, body in take_packets(buf):
                if ptype == PUBLISH:
                    got.append(int(body[-8:]))
        if not checked and sent > len(data) // 2:
            served(b, "o2")
            checked = True
    assert got == list(range(n)), f"{len(got)} of {n} (sent {sent} of {len(data)}, {blocked})"
    assert "Client self0 is stalled" not in b.log


def test_two_clients_feeding_each_other_never_deadlock(broker_factory):
    """A publishes what B subscribes to and B what A subscribes to, each
    reading more slowly than it writes (4 KiB chunks): each holds the other
    back in turn, and both floods complete with every message delivered to
    the other once and in order; another client is served meanwhile."""
    b = broker_factory(DL_CFG.replace("output_stall_timeout 1", "output_stall_timeout 10"))
    n = 8000
    a = client_on(b, "feedA", filters=[("toA/#", 0)])
    c = client_on(b, "feedB", filters=[("toB/#", 0)])
    ra, rb = Reader(a, n), Reader(c, n)
    ra.go.set()
    rb.go.set()
    ra.start()
    rb.start()
    errors = []

    def run(cl, data):
        try:
            send_rest(cl.sock, data, 0, time.monotonic() + 60)
        except Exception as e:
            errors.append(e)

    ta = threading.Thread(target=run, args=(a, b"".join(flood("toB/x", n))), daemon=True)
    tb = threading.Thread(target=run, args=(c, b"".join(flood("toA/x", n))), daemon=True)
    ta.start()
    tb.start()
    served(b, "o3")
    for t in (ta, tb, ra, rb):
        t.join(60)
    assert not errors, errors
    assert ra.error is None and rb.error is None, (ra.error, rb.error)
    assert ra.got == list(range(n)) and rb.got == list(range(n)), (len(ra.got), len(rb.got))
    assert "is stalled" not in b.log
    served(b, "o4")


def test_two_clients_feeding_each_other_without_reading(broker_factory):
    """The same pair, neither reading at all: held back by each other, then
    both classed stalled after output_stall_timeout (each logged once), so
    they hold no one back any more; the broker serves another client
    throughout (what is left of their input waits behind their own full
    output, max_output_buffer)."""
    b = broker_factory(DL_CFG)
    n = 20000
    a = client_on(b, "feedA", small_rcvbuf_socket(b.host, b.port), [("toA/#", 0)])
    c = client_on(b, "feedB", small_rcvbuf_socket(b.host, b.port), [("toB/#", 0)])
    mark = b.mark()
    sa = pushed_back(a.sock, b"".join(flood("toB/x", n)))
    sb = pushed_back(c.sock, b"".join(flood("toA/x", n)))
    assert sa is not None and sb is not None
    b.wait_log(r"Client feedA is stalled", start=mark)
    b.wait_log(r"Client feedB is stalled", start=mark)
    served(b, "o6")
    assert len(re.findall(r"Client feed[AB] is stalled", b.log)) == 2


def test_shared_subscription_with_a_stalled_member(broker_factory):
    """$share/g/... with one member that never reads and one that reads: the
    flood completes, the reading member receives its share once and in
    order, and the stalled member is cut loose."""
    b = broker_factory(DL_CFG)
    n = 8000
    st = stalled_sub(b, "shS", [("$share/g/sh/#", 0)])
    good = client_on(b, "shG", filters=[("$share/g/sh/#", 0)])
    reader = Reader(good, n // 2, deadline=30)
    reader.go.set()
    reader.start()
    pub = client_on(b, "shP")
    mark = b.mark()
    send_rest(pub.sock, b"".join(flood("sh/x", n)), 0, time.monotonic() + 60)
    reader.join(40)
    assert reader.error is None or isinstance(reader.error, TimeoutError), reader.error
    assert reader.dups == 0
    assert reader.got == sorted(reader.got) and len(reader.got) >= n // 2 - 1
    b.wait_log(r"Client shS is stalled", start=mark)
    served(b, "o5")
    st.close()


def test_broker_made_messages_never_held(broker_factory):
    """While a subscriber of '#' and '$SYS/#' is full (not reading, long
    stall timeout) and holds back a publisher: $SYS updates still reach
    another subscriber, a will is still published and delivered, and a
    retained message from a held-back publisher is still stored."""
    b = broker_factory("threads 2\noutput_soft_limit 65536\noutput_stall_timeout 60\n"
                       "sys_interval 1\n")
    full = stalled_sub(b, "full0", [("#", 0), ("$SYS/#", 0)])
    pub = client_on(b, "heldP")
    data = b"".join(flood("any/x", 20000))
    sent = pushed_back(pub.sock, data)
    assert sent is not None, "publisher not held back"
    # $SYS: broker_publish_internal goes on.
    w = client_on(b, "sysw", filters=[("$SYS/broker/uptime", 0)])
    p = w.expect(PUBLISH, timeout=10)
    assert topic_of(p) == "$SYS/broker/uptime"
    p = w.expect(PUBLISH, timeout=10)  # and the next interval's
    # Will: published by the broker, delivered.
    wsub = client_on(b, "willsub", filters=[("will/t", 0)])
    lost = client_on(b, "willer", will=dict(topic="will/t", payload=b"gone"))
    lost.sock.close()
    p = wsub.expect(PUBLISH, timeout=10)
    assert topic_of(p) == "will/t" and p.body.endswith(b"gone")
    # Retained: a client's retained publish reaches '#' (full) and is held
    # back after it is routed, but it is stored: a new subscriber gets it.
    r = client_on(b, "retP")
    r.send(publish("ret/t", b"kept", retain=True))
    n = client_on(b, "retS", filters=[("ret/t", 0)])
    p = n.expect(PUBLISH, timeout=10)
    assert p.body.endswith(b"kept") and p.flags & 1
    assert "Client full0 is stalled" not in b.log
    full.close()
    pub.close()
