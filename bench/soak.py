#!/usr/bin/python3
"""Soak test for hato (issue 7): mixed load for N minutes, broker RSS sampled.

Not a test of the suite (it takes minutes and judges trends): run it by hand
or from a nightly job.

    bench/soak.py                      # 10 minutes against build/hato
    bench/soak.py --minutes 2 --bin build-asan/hato

Load, all at once, over raw MQTT sockets (tests/mqttraw.py):
  * publishers: QoS 0/1/2 in turn, sequence-numbered payloads of 0..2 KiB;
  * persistent subscribers (clean session off, QoS 2) that disconnect every
    few seconds, cleanly or abruptly, stay away a moment and resume their
    session: every QoS 1/2 message the broker acknowledged to a publisher
    must reach each of them (QoS 2 exactly once);
  * client churn: short-lived clients (3.1.1 and 5) that connect, subscribe,
    publish and leave, some without DISCONNECT (their will fires);
  * retained updates over 100 topics, checked by a fresh subscriber now and
    then (it must get one retained message per topic set so far);
  * a slow consumer that reads 1 KiB a second and never acknowledges.
Every --interval seconds: broker RSS (/proc/PID/status) and its counters
(SIGUSR1 "Stats" line). At the end: RSS over time, errors, QoS 1/2 lost.
Exit status 0 when there were no errors, no loss, and RSS levelled off.
"""

import argparse
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from mqttraw import (PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK,  # noqa: E402
                     RawClient, ack, connect, disconnect, publish, subscribe)

STOP = threading.Event()
LOCK = threading.Lock()
ERRORS = []
COUNTS = {"published": 0, "received": 0, "churn": 0, "reconnects": 0, "retained_checks": 0}


def error(what):
    with LOCK:
        ERRORS.append(f"{time.strftime('%H:%M:%S')} {what}")


def count(key, n=1):
    with LOCK:
        COUNTS[key] += n


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def guarded(fn):
    """Run a load loop; an unexpected exception is an error, then it goes on."""
    def run(*a):
        while not STOP.is_set():
            try:
                fn(*a)
                return
            except Exception:  # noqa: BLE001 - every failure is reported
                if not STOP.is_set():
                    error(f"{fn.__name__}{a}: {traceback.format_exc(limit=2).strip()}")
                    STOP.wait(0.5)
    return run


class Ledger:
    """What publishers had acknowledged and what each subscriber got."""

    def __init__(self):
        self.acked = set()  # (pub, seq, qos) acknowledged by the broker
        self.got = {}       # subscriber -> {(pub, seq): times}

    def ack(self, key):
        with LOCK:
            self.acked.add(key)

    def deliver(self, sub, pub, seq):
        with LOCK:
            d = self.got.setdefault(sub, {})
            d[(pub, seq)] = d.get((pub, seq), 0) + 1


LEDGER = Ledger()


def publisher(port, n, rate):
    c = RawClient(port, timeout=10)
    c.connect(f"soak-pub-{n}")
    seq = 0
    pid = 0
    period = 1.0 / rate
    next_t = time.monotonic()
    while not STOP.is_set():
        qos = seq % 3
        pid = pid % 65535 + 1
        pad = b"p" * random.randint(0, 2048)
        c.send(publish(f"soak/data/{n}", b"%d:%d:%d:" % (n, seq, qos) + pad, qos=qos, pid=pid))
        if qos == 1:
            assert c.expect(PUBACK).pid == pid
        elif qos == 2:
            assert c.expect(PUBREC).pid == pid
            c.send(ack(PUBREL, pid))
            assert c.expect(PUBCOMP).pid == pid
        if qos:
            LEDGER.ack((n, seq, qos))
        count("published")
        seq += 1
        next_t += period
        delay = next_t - time.monotonic()
        if delay > 0:
            STOP.wait(delay)
        else:
            next_t = time.monotonic()
    c.send(disconnect())
    c.close()


def persistent_subscriber(port, n, final):
    """Resumes its session again and again; keeps QoS 2 state across connections."""
    name = f"soak-sub-{n}"
    pending = set()  # QoS 2 packet ids received, PUBREL not yet: deliver once
    first = True
    while True:
        c = RawClient(port, timeout=10)
        c.connect(name, clean=False)
        if first:
            c.send(subscribe(1, [("soak/data/#", 2)]))
            c.expect(SUBACK)
            first = False
        else:
            count("reconnects")
        end = time.monotonic() + random.uniform(3, 10)
        quiet_end = None
        while True:
            if STOP.is_set() and quiet_end is None:
                quiet_end = True
            try:
                p = c.recv(3.0 if quiet_end else 0.5)
            except TimeoutError:
                if quiet_end:
                    c.send(disconnect())
                    c.close()
                    final.set()
                    return
                if time.monotonic() >= end:
                    break
                continue
            if p.type == PUBLISH:
                pub, seq = (int(x) for x in p.payload.split(b":", 3)[:2])
                if p.qos == 2:
                    if p.pid not in pending:
                        pending.add(p.pid)
                        LEDGER.deliver(name, pub, seq)
                    c.send(ack(PUBREC, p.pid))
                else:
                    LEDGER.deliver(name, pub, seq)
                    if p.qos == 1:
                        c.send(ack(PUBACK, p.pid))
                count("received")
            elif p.type == PUBREL:
                pending.discard(p.pid)
                c.send(ack(PUBCOMP, p.pid))
            if not quiet_end and time.monotonic() >= end:
                break
        # Leave: half the time cleanly, else just drop the socket.
        if random.random() < 0.5:
            c.send(disconnect())
        c.close()
        STOP.wait(random.uniform(0.2, 2.0))


def churn(port, rate):
    i = 0
    while not STOP.is_set():
        i += 1
        v = 5 if i % 2 else 4
        c = RawClient(port, version=v, timeout=10)
        will = dict(topic="soak/churn/will", payload=b"gone", qos=1) if i % 3 == 0 else None
        c.send(connect(f"soak-churn-{i % 500}", version=v, will=will))
        c.expect(2)
        c.send(subscribe(1, [("soak/churn/#", 1)], version=v))
        c.expect(SUBACK)
        c.send(publish("soak/churn/x", b"hi", qos=1, pid=1, version=v))
        # PUBACK and our own message may come in either order.
        for _ in range(2):
            p = c.recv(10)
            if p.type == PUBLISH and p.qos == 1:
                c.send(ack(PUBACK, p.pid))
        if i % 4:
            c.send(disconnect())
        c.close()
        count("churn")
        STOP.wait(1.0 / rate)


def retained(port):
    c = RawClient(port, timeout=10)
    c.connect("soak-retain")
    topics = set()
    pid = 0
    last_check = time.monotonic()
    while not STOP.is_set():
        k = random.randrange(100)
        pid = pid % 65535 + 1
        c.send(publish(f"soak/retained/{k}", b"v%d" % pid, qos=1, retain=True, pid=pid))
        assert c.expect(PUBACK).pid == pid
        topics.add(k)
        if time.monotonic() - last_check > 10:
            last_check = time.monotonic()
            chk = RawClient(port, timeout=10)
            chk.connect("")
            chk.send(subscribe(1, [("soak/retained/#", 0)]))
            chk.expect(SUBACK)
            seen = set()
            while True:
                try:
                    p = chk.recv(1.0)
                except TimeoutError:
                    break
                if p.type == PUBLISH and p.retain:
                    seen.add(p.topic)
            chk.close()
            want = {f"soak/retained/{t}" for t in topics}
            if not want <= seen:
                error(f"retained: {len(want - seen)} topics missing")
            count("retained_checks")
        STOP.wait(0.05)
    c.close()


def slow_consumer(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(connect("soak-slow", clean=False) + subscribe(1, [("soak/data/#", 1),
                                                                 ("soak/churn/#", 0)]))
    while not STOP.is_set():
        s.settimeout(1.0)
        try:
            if not s.recv(1024):
                error("slow consumer: closed by broker")
                return
        except socket.timeout:
            pass
        STOP.wait(1.0)
    s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "hato"))
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--rate", type=float, default=200.0, help="messages/s per publisher")
    ap.add_argument("--subscribers", type=int, default=2)
    ap.add_argument("--churn", type=float, default=20.0, help="connections/s")
    args = ap.parse_args()

    port = free_port()
    work = tempfile.mkdtemp(prefix="hato-soak-")
    conf = os.path.join(work, "soak.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                # Room for the persistent subscribers' offline gaps (about
                # 1 MiB each); the slow consumer fills its queue to the
                # byte limit in the first minute, then it is dropped for.
                "max_queued_messages 100000\nmax_queued_bytes 16777216\n")
    log_path = os.path.join(work, "broker.log")
    log = open(log_path, "w")
    broker = subprocess.Popen([args.bin, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while "running" not in open(log_path).read():
        if time.monotonic() > deadline or broker.poll() is not None:
            sys.exit("broker did not start:\n" + open(log_path).read())
        time.sleep(0.05)
    print(f"hato soak: {args.bin}, port {port}, {args.minutes} min, log {log_path}")

    finals = [threading.Event() for _ in range(args.subscribers)]
    threads = [threading.Thread(target=guarded(persistent_subscriber), args=(port, i, finals[i]))
               for i in range(args.subscribers)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # the subscribers' SUBSCRIBE is in before anything is published
    load = [threading.Thread(target=guarded(publisher), args=(port, i, args.rate))
            for i in range(args.publishers)]
    load += [threading.Thread(target=guarded(churn), args=(port, args.churn)),
             threading.Thread(target=guarded(retained), args=(port,)),
             threading.Thread(target=guarded(slow_consumer), args=(port,))]
    for t in load:
        t.start()

    samples = []
    start = time.monotonic()
    end = start + args.minutes * 60
    print(f"{'t(s)':>6} {'RSS KiB':>9} {'clients':>7} {'in':>9} {'out':>9} {'dropped':>8} {'errors':>6}")
    while time.monotonic() < end and broker.poll() is None:
        time.sleep(min(args.interval, max(0.0, end - time.monotonic())))
        size = os.path.getsize(log_path)
        broker.send_signal(signal.SIGUSR1)
        st = None
        for _ in range(50):
            time.sleep(0.02)
            with open(log_path) as f:
                f.seek(size)
                m = re.search(r"Stats: (\d+) clients, (\d+) messages in, (\d+) out, (\d+) dropped",
                              f.read())
            if m:
                st = [int(x) for x in m.groups()]
                break
        rss = rss_kib(broker.pid)
        samples.append((time.monotonic() - start, rss))
        st = st or [-1] * 4
        print(f"{samples[-1][0]:6.0f} {rss:9d} {st[0]:7d} {st[1]:9d} {st[2]:9d} {st[3]:8d} "
              f"{len(ERRORS):6d}", flush=True)

    STOP.set()
    for t in load:
        t.join(30)
    for ev in finals:  # subscribers drain their sessions, then leave
        ev.wait(60)
    for t in threads:
        t.join(30)
    broker_alive = broker.poll() is None
    broker.send_signal(signal.SIGTERM)
    try:
        rc = broker.wait(30)
    except subprocess.TimeoutExpired:
        broker.kill()
        rc = "killed"
    log.close()
    text = open(log_path).read()
    if not broker_alive:
        error("broker exited during the run")
    if rc != 0:
        error(f"broker exit status {rc}")
    for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        if mark in text:
            error(f"sanitizer report in broker log ({mark})")

    # Loss: every acknowledged QoS 1/2 message, at every persistent subscriber.
    lost = {}
    dup2 = 0
    for i in range(args.subscribers):
        got = LEDGER.got.get(f"soak-sub-{i}", {})
        lost[i] = sum(1 for (p, s, q) in LEDGER.acked if (p, s) not in got)
        dup2 += sum(1 for (p, s, q) in LEDGER.acked if q == 2 and got.get((p, s), 0) > 1)
    rss = [r for _, r in samples]
    third = max(1, len(rss) // 3)
    mid, last = max(rss[third:2 * third] or rss), max(rss[-third:])
    level = last <= mid * 1.10 + 2048  # within 10 % (+2 MiB) of the middle third
    print()
    print(f"RSS KiB: first {rss[0]}, max {max(rss)}, last {rss[-1]}; max of middle third {mid}, "
          f"of last third {last}: {'levels off' if level else 'STILL GROWING'}")
    print(f"counts: {COUNTS}")
    print(f"QoS 1/2 acknowledged to publishers: {len(LEDGER.acked)}; lost per subscriber: {lost}; "
          f"QoS 2 duplicates: {dup2}")
    print(f"errors: {len(ERRORS)}")
    for e in ERRORS[:20]:
        print("  " + e)
    ok = not ERRORS and not any(lost.values()) and not dup2 and level
    print("RESULT:", "ok" if ok else "FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
