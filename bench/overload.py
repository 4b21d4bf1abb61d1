#!/usr/bin/python3
"""Overload: a flood, a stalled subscriber and a slower healthy one (issue 15, part 1).

A raw-socket publisher floods `flood/t` with PUBLISH packets of 1000 bytes
(numbered); one subscriber never reads (small receive buffer, stalled), one
is a Python paho-mqtt client (Debian's /usr/bin/python3) that counts what it
gets. For hato and for Debian's mosquitto, alternately, in the same run:

- broker RSS growth (max sampled during the flood minus before it),
- the share of the messages the healthy subscriber received (QoS 0 and 1),
- the publisher's rate (MB/s; with back-pressure it falls to what the
  healthy subscriber takes).

Bounded: --mb megabytes per run (default 100; the issue's target is stated
for 400, `--mb 400`), every run capped at --timeout seconds. Prints one row
per run and the medians; no assertion (a benchmark, not a test).

    bench/overload.py [--mb 100] [--rounds 3] [--qos 0,1] [--hato build/hato]
"""

import argparse
import json
import os
import select
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from mqttraw import packet, s  # noqa: E402  (the tests' MQTT byte builders)
SIZE = 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(cid):
    return packet(1, 0, s("MQTT") + bytes([4, 2]) + struct.pack("!H", 600) + s(cid))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_broker(kind, hato_bin, tmp):
    port = free_port()
    conf = os.path.join(tmp, f"{kind}-{port}.conf")
    text = f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000\n"
    if os.geteuid() == 0:
        text += "user root\n"
    with open(conf, "w") as f:
        f.write(text)
    cmd = [hato_bin if kind == "hato" else "/usr/sbin/mosquitto", "-c", conf]
    log = open(os.path.join(tmp, f"{kind}-{port}.log"), "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    p.logpath = log.name
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p, port
        except OSError:
            if p.poll() is not None:
                raise SystemExit(f"{kind} exited at start")
            select.select([], [], [], 0.05)
    p.kill()
    raise SystemExit(f"{kind} did not listen")


def raw_client(port, cid, rcvbuf=None):
    c = socket.socket()
    if rcvbuf:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    c.settimeout(10)
    c.connect(("127.0.0.1", port))
    c.sendall(connect(cid))
    c.recv(4)  # CONNACK
    return c


def subscribe_raw(c, topic, qos):
    c.sendall(packet(8, 2, struct.pack("!H", 1) + s(topic) + bytes([qos])))
    c.recv(5)  # SUBACK


def healthy_sub(port, qos, got):
    try:
        cl = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id="healthy")
    except AttributeError:  # paho-mqtt 1.x (Debian 12)
        cl = mqtt.Client(client_id="healthy")
    ready = threading.Event()
    cl.on_connect = lambda c, u, f, rc: c.subscribe("flood/t", qos)
    cl.on_subscribe = lambda *a: ready.set()

    def on_message(c, u, m):
        got.append(int(m.payload[-8:]))

    cl.on_message = on_message
    cl.max_inflight_messages_set(20)
    cl.connect("127.0.0.1", port, keepalive=600)
    cl.loop_start()
    if not ready.wait(10):
        raise SystemExit("healthy subscriber not subscribed")
    return cl


def run_one(kind, hato_bin, mb, qos, timeout, tmp):
    broker, port = start_broker(kind, hato_bin, tmp)
    try:
        stalled = raw_client(port, "stalled", rcvbuf=4096)
        subscribe_raw(stalled, "flood/t", qos)
        got = []
        cl = healthy_sub(port, qos, got)
        n = mb * 1000 * 1000 // (SIZE + 20)
        stop = threading.Event()
        rss = [rss_kib(broker.pid)]
        base = rss[0]

        def sample():
            while not stop.is_set():
                rss.append(rss_kib(broker.pid))
                stop.wait(0.1)

        threads = [threading.Thread(target=sample, daemon=True)]
        for t in threads:
            t.start()
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--publisher",
                            str(port), str(n), str(qos), str(timeout)],
                           capture_output=True, text=True, timeout=timeout + 30)
        res = json.loads(r.stdout.strip().splitlines()[-1])
        sent, elapsed, timed_out = res["sent"], res["elapsed"], res["timed_out"]
        deadline = time.monotonic()
        # The healthy subscriber takes what is left: until quiet for 6 s.
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline + 30 and len(got) < sent:
            if len(got) != last:
                last, quiet_since = len(got), time.monotonic()
            elif time.monotonic() - quiet_since > 6:  # past output_stall_timeout (2 s)
                break
            select.select([], [], [], 0.1)
        stop.set()
        for t in threads:
            t.join(2)
        cl.loop_stop()
        uniq = len(set(got))
        with open(broker.logpath) as f:
            log = f.read()
        return {
            "broker": kind, "qos": qos, "sent": sent, "received": len(got),
            "share": uniq / sent if sent else 0.0, "dups": len(got) - uniq,
            "in_order": got == sorted(got),
            "rss_growth_mib": (max(rss) - base) / 1024, "pub_mb_s": sent * (SIZE + 20) / 1e6 /
            elapsed, "elapsed_s": elapsed, "timed_out": timed_out,
            "healthy_stalled": log.count("Client healthy is stalled"),
            "healthy_stalled_hard": log.count("Client healthy is stalled (over"),
            "healthy_dropping": log.count("Client healthy is not reading"),
            "healthy_queue_full": log.count("Queue of client healthy is full"),
        }
    finally:
        broker.terminate()
        try:
            broker.wait(10)
        except subprocess.TimeoutExpired:
            broker.kill()


def publisher(port, n, qos, timeout):
    """The flood, in a process of its own: it reads its PUBACKs on a thread."""
    pub = raw_client(port, "pub")
    stop = threading.Event()
    got = [0]  # bytes from the broker: PUBACKs, 4 bytes each

    def drain_acks():
        pub.settimeout(0.5)
        while not stop.is_set():
            try:
                d = pub.recv(65536)
                if not d:
                    return
                got[0] += len(d)
            except socket.timeout:
                continue
            except OSError:
                return

    t = threading.Thread(target=drain_acks, daemon=True)
    t.start()
    head = b"p" * (SIZE - 8)
    t0 = time.monotonic()
    deadline = t0 + timeout
    pub.settimeout(timeout)
    sent, timed_out, batch = 0, False, 1000
    for start in range(0, n, batch):
        if time.monotonic() > deadline:
            timed_out = True
            break
        chunk = bytearray()
        for i in range(start, min(n, start + batch)):
            if qos:
                chunk += packet(3, 2, s("flood/t") + struct.pack("!H", i % 65535 + 1) + head +
                                b"%08d" % i)
            else:
                chunk += packet(3, 0, s("flood/t") + head + b"%08d" % i)
        try:
            pub.sendall(bytes(chunk))
        except OSError:
            timed_out = True
            break
        sent = min(n, start + batch)
    # Closing with unread bytes would reset the connection and lose what the
    # broker has not read yet: QoS 1 waits for every PUBACK, QoS 0 sends
    # DISCONNECT and waits for the broker to close.
    if qos:
        while got[0] < 4 * sent and time.monotonic() < deadline and t.is_alive():
            t.join(0.1)
    else:
        pub.sendall(b"\xe0\x00")
        t.join(max(0.1, deadline - time.monotonic()))
    elapsed = time.monotonic() - t0
    stop.set()
    print(json.dumps({"sent": sent, "elapsed": elapsed, "timed_out": timed_out}))


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "--publisher":
        return publisher(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                         float(sys.argv[5]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--qos", default="0,1")
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("--hato", default=os.path.join(ROOT, "build", "hato"))
    ap.add_argument("--brokers", default="hato,mosquitto")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for qos in [int(q) for q in a.qos.split(",")]:
            for r in range(a.rounds):
                for kind in a.brokers.split(","):  # alternately, same run
                    row = run_one(kind, a.hato, a.mb, qos, a.timeout, tmp)
                    row["round"] = r
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print(f"\n{a.mb} MB per run, payload {SIZE} B, medians of {a.rounds}:")
    print("| broker | QoS | healthy got | RSS growth MiB | publisher MB/s | dups | in order |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for qos in [int(q) for q in a.qos.split(",")]:
        for kind in a.brokers.split(","):
            rs = [x for x in rows if x["broker"] == kind and x["qos"] == qos]
            print(f"| {kind} | {qos} | {statistics.median(x['share'] for x in rs):.1%} | "
                  f"{statistics.median(x['rss_growth_mib'] for x in rs):.1f} | "
                  f"{statistics.median(x['pub_mb_s'] for x in rs):.1f} | "
                  f"{sum(x['dups'] for x in rs)} | {all(x['in_order'] for x in rs)} |")


if __name__ == "__main__":
    sys.exit(main())
