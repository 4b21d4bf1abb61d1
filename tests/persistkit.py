"""Helpers for the persistence tests: brokers restarted on one store directory,
publishers that remember what was acknowledged, and subscribers that keep the
client side of QoS 2 (packet ids awaiting PUBREL) across reconnects, so that
"exactly once" is judged as a real client would see it."""

import os
import select
import signal
import socket
import struct
import threading
import time

from conftest import Broker, free_port
from mqttraw import (CONNACK, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, RawClient, ack, connect,
                     publish, subscribe, SUBACK)


def store_config(store_dir, sync="always", extra=""):
    return (f"persistence true\npersistence_location {store_dir}/\n"
            f"persistence_sync {sync}\n" + extra)


def start(tmp_path, store_dir, sync="always", extra="", **kw):
    """A broker on a fresh port, persisting into store_dir."""
    b = Broker(tmp_path, store_config(store_dir, sync, extra), **kw)
    b.wait_log(r"Persistence: restored")
    return b


def crash(b):
    """SIGKILL: no shutdown code runs."""
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()
    b.reader.join(timeout=10)


class Subscriber:
    """A persistent-session subscriber that records every message it delivers to its
    application. QoS 2 is received by method A: delivered on the first PUBLISH of a packet
    id, the id kept until PUBREL, so a resent PUBLISH (DUP) is not delivered twice."""

    def __init__(self, client_id, topic, qos):
        self.client_id = client_id
        self.topic = topic
        self.qos = qos
        self.got = []            # payloads, in delivery order
        self.awaiting_rel = set()  # QoS 2 ids delivered, PUBREL not yet seen
        self.cond = threading.Condition()
        self.sock = None
        self.thread = None
        self.stop_flag = False

    def connect(self, port, subscribe_first=False):
        c = RawClient(port, timeout=10)
        c.send(connect(self.client_id, clean=False, keepalive=0))
        ack_ = c.expect(CONNACK)
        assert ack_.reason == 0
        if subscribe_first:
            c.send(subscribe(1, [(self.topic, self.qos)]))
            c.expect(SUBACK)
        self.client = c
        self.stop_flag = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return ack_

    def _run(self):
        c = self.client
        while not self.stop_flag:
            try:
                p = c.recv(0.2)
            except TimeoutError:
                continue
            except (ConnectionError, OSError):
                return
            try:
                if p.type == PUBLISH:
                    # Deliver to the application first, then acknowledge.
                    if p.qos < 2 or p.pid not in self.awaiting_rel:
                        if p.qos == 2:
                            self.awaiting_rel.add(p.pid)
                        with self.cond:
                            self.got.append(p.payload)
                            self.cond.notify_all()
                    c.send(ack(PUBACK if p.qos == 1 else PUBREC, p.pid)) if p.qos else None
                elif p.type == PUBREL:
                    self.awaiting_rel.discard(p.pid)
                    c.send(ack(PUBCOMP, p.pid))
            except OSError:
                return

    def wait_for(self, payloads, timeout=60):
        """Wait until every payload in the set was delivered; return the missing ones."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                missing = set(payloads) - set(self.got)
                left = deadline - time.monotonic()
                if not missing or left <= 0:
                    return missing
                self.cond.wait(min(left, 0.5))

    def disconnect(self, clean=True):
        self.stop_flag = True
        if clean:
            try:
                self.client.send(bytes([0xE0, 0]))
            except OSError:
                pass
        if self.thread:
            self.thread.join(timeout=10)
        self.client.close()


class Publisher(threading.Thread):
    """Publishes `count` messages b"<name>-<n>" on topic, at most `window` unacknowledged,
    and records those acknowledged (PUBACK, or PUBREC for QoS 2). Stops when the broker
    goes away. Every `retain_every` messages it also publishes a retained message
    b"<name>-r<n>" on retain_topic and waits for its acknowledgement."""

    def __init__(self, port, name, topic, qos, count, window=10, retain_topic=None,
                 retain_every=0, progress=None):
        super().__init__(daemon=True)
        self.progress = progress  # a Condition notified on every acknowledgement
        self.port, self.name, self.topic, self.qos = port, name, topic, qos
        self.count, self.window = count, window
        self.retain_topic, self.retain_every = retain_topic, retain_every
        self.acked = []
        self.sent = []
        self.retained_acked = None
        self.retained_sent = None
        self.error = None
        self.lock = threading.Lock()

    def _handle(self, c, p, pending):
        """pending: pid -> [payload, stage]; stage "pub" until acknowledged, then "rel"."""
        entry = pending.get(getattr(p, "pid", None))
        if entry is None:
            return
        if p.type in (PUBACK, PUBREC) and entry[1] == "pub":
            with self.lock:
                if entry[0].startswith(self.name.encode() + b"-r"):
                    self.retained_acked = entry[0]
                else:
                    self.acked.append(entry[0])
            if self.progress is not None:
                with self.progress:
                    self.progress.notify_all()
            if p.type == PUBACK:
                del pending[p.pid]
            else:
                entry[1] = "rel"
                c.send(ack(PUBREL, p.pid))
        elif p.type == PUBREC:
            c.send(ack(PUBREL, p.pid))
        elif p.type == PUBCOMP and entry[1] == "rel":
            del pending[p.pid]

    def run(self):
        try:
            c = RawClient(self.port, timeout=10)
            c.send(connect(self.name, clean=True, keepalive=0))
            c.expect(CONNACK)
            pending = {}
            pid = 0
            for n in range(self.count):
                if self.retain_every and n % self.retain_every == 0:
                    # Retained: one at a time, so "last acknowledged" is well defined.
                    while pending:
                        self._handle(c, c.recv(10), pending)
                    pid = pid % 65535 + 1
                    payload = f"{self.name}-r{n}".encode()
                    pending[pid] = [payload, "pub"]
                    self.retained_sent = payload
                    c.send(publish(self.retain_topic, payload, qos=self.qos, retain=True, pid=pid))
                    while pending:
                        self._handle(c, c.recv(10), pending)
                while len(pending) >= self.window:
                    self._handle(c, c.recv(10), pending)
                pid = pid % 65535 + 1
                while pid in pending:
                    pid = pid % 65535 + 1
                payload = f"{self.name}-{n}".encode()
                pending[pid] = [payload, "pub"]
                with self.lock:
                    self.sent.append(payload)
                c.send(publish(self.topic, payload, qos=self.qos, pid=pid))
                # Take what already arrived without waiting.
                while select.select([c.sock], [], [], 0)[0] or len(c.buf) > 2:
                    try:
                        self._handle(c, c.recv(0.01), pending)
                    except TimeoutError:
                        break
            while pending:
                self._handle(c, c.recv(10), pending)
        except (ConnectionError, OSError, TimeoutError, AssertionError) as e:
            self.error = e

    def total_acked(self):
        with self.lock:
            return len(self.acked)
