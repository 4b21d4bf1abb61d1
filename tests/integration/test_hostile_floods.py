"""Floods and slowloris (issue 7): connections that never send CONNECT, too
many connections, half-open connections, and clients that send one byte at a
time. Each holds at most its own small budget and is closed by the connect
timeout, max_connections or keep-alive; the broker keeps serving others.

Where a test sends slowly it is simulating the hostile client (bounded in
bytes and time), not waiting for the broker.
"""

import os
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hostile import rss_kib, wait_closed, wait_count  # noqa: E402
from mqttraw import (PINGRESP, PUBLISH, SUBACK, RawClient, closed_by_broker,  # noqa: E402
                     connect, connected_client, pingreq, publish, subscribe)

pytestmark = pytest.mark.hato_only("hato limits, log lines and reason codes")


def _alive(b, name):
    """A fresh client connects, subscribes and receives its own message."""
    c = connected_client(b, name)
    c.send(subscribe(1, [(name, 0)]))
    c.expect(SUBACK)
    c.send(publish(name, b"alive"))
    assert c.expect(PUBLISH).payload == b"alive"
    c.close()


def test_many_silent_connections_closed_after_connect_timeout_MQTT_3_1_4_1(broker_factory):
    """200 connections that never send CONNECT are each closed after
    connect_timeout, without a CONNACK; meanwhile a normal client is served.
    An idle pre-CONNECT connection costs the broker well under 16 KiB."""
    b = broker_factory("connect_timeout 2\n")
    before = rss_kib(b.proc.pid)
    socks = [socket.create_connection((b.host, b.port), timeout=5) for _ in range(200)]
    b.wait_log(r"New connection from .*", timeout=10)
    _alive(b, "served-during-flood")
    during = rss_kib(b.proc.pid)
    print(f"200 silent connections: RSS {before} -> {during} KiB")
    assert during - before < 200 * 16
    deadline = time.monotonic() + 15
    for s in socks:
        assert wait_closed(s, max(0.1, deadline - time.monotonic())), "silent connection kept"
        s.close()
    wait_count(b, "no CONNECT in time", 200)
    _alive(b, "served-after-flood")


def test_max_connections_refused_clearly_and_recovers(broker_factory):
    """With max_connections 20 on the listener the 21st connection is closed at
    once and the refusal logged; when one of the 20 leaves, a new one is
    accepted again."""
    b = broker_factory("max_connections 20\n")
    clients = [connected_client(b, f"mc{i}") for i in range(20)]
    extra = socket.create_connection((b.host, b.port), timeout=5)
    extra.sendall(connect("mc-extra"))
    assert wait_closed(extra, 5), "21st connection accepted"
    extra.close()
    b.wait_log(r"Refused connection from .*max_connections \(20\) reached")
    mark = b.mark()
    clients[0].close()
    b.wait_log(r"Client mc0 .* disconnected", start=mark)
    # The slot is freed just after that log line (another thread may accept
    # first): a few attempts, each a full round trip.
    again = None
    for _ in range(20):
        try:
            again = connected_client(b, "mc-again")
            break
        except ConnectionError:
            continue
    assert again, "no connection accepted after one left"
    again.send(pingreq())
    again.expect(PINGRESP)
    for c in clients[1:] + [again]:
        c.close()


def test_slowloris_connect_cannot_outlive_connect_timeout(broker_factory):
    """A client that sends its CONNECT one byte every 0.3 s (bytes keep
    arriving) is still closed when connect_timeout runs out: only a complete
    CONNECT counts."""
    b = broker_factory("connect_timeout 1\n")
    data = connect("slowloris", will=dict(topic="w", payload=b"x" * 40))
    s = socket.create_connection((b.host, b.port), timeout=5)
    closed = False
    for byte in data[:-1]:  # never complete; at most len(data) * 0.3 s
        try:
            s.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if wait_closed(s, 0.3):
            closed = True
            break
    # Closed while bytes were still coming (the whole CONNECT would take
    # len(data) * 0.3 s, far past connect_timeout).
    assert closed, "slow CONNECT kept the connection open"
    b.wait_log("no CONNECT in time")
    _alive(b, "after-slowloris")


def test_slowloris_partial_packet_closed_by_keepalive_MQTT_3_1_2_24(broker):
    """A connected client (keep alive 1 s) that trickles the bytes of a PUBLISH
    announcing 60 KiB, one every 0.2 s, is closed after 1.5 keep-alive
    periods: bytes of an incomplete packet are not a Control Packet."""
    c = connected_client(broker, "trickle", keepalive=1)
    head = bytes([0x30]) + b"\x80\xe0\x03"  # PUBLISH, 61440 bytes announced
    body = b"\x00\x01t" + b"x" * 100
    closed = False
    for byte in head + body:  # at most 104 bytes * 0.2 s
        try:
            c.sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if wait_closed(c.sock, 0.2):
            closed = True
            break
    assert closed, "trickling client not closed by keep alive"
    broker.wait_log("trickle .*keep alive timeout")
    _alive(broker, "after-trickle")


def test_many_half_open_clients_reaped_by_keepalive_MQTT_3_1_2_24(broker):
    """50 clients connect with keep alive 1 s and then go silent, as if their
    network vanished: each is closed by the broker after 1.5 s, and a new
    client is served throughout."""
    clients = [connected_client(broker, f"ho{i}", keepalive=1) for i in range(50)]
    _alive(broker, "served-with-half-open")
    deadline = time.monotonic() + 15
    for c in clients:
        assert wait_closed(c.sock, max(0.1, deadline - time.monotonic())), "half-open kept"
        c.close()
    wait_count(broker, "keep alive timeout", 50)


def test_partial_connect_buffer_bounded_by_preconnect_cap(broker):
    """Before CONNECT a packet may announce at most 256 KiB: announcing more
    closes at once; announcing less but sending little holds only what was
    sent until the connect timeout."""
    c = RawClient(broker)
    c.send(b"\x10\x80\x80\x11")  # CONNECT of 278528 bytes announced
    assert closed_by_broker(c) == []
    ok = RawClient(broker)
    ok.send(b"\x10\x80\x80\x0f" + b"\x00" * 10)  # 245760 announced, 10 sent: waits
    ok.expect_nothing(0.3)
    ok.close()
