"""hato-bench, the load generator: its counts must be right, or every
benchmark built on it is wrong. Small bounded runs against the real broker,
and against a deliberately faulty relay that drops, duplicates and reorders,
to prove the tool sees each of those."""

import json
import re
import os
import socket
import subprocess
import threading
import time

import pytest

from conftest import HATO_BIN, free_port
from mqttraw import read_varint

BENCH = os.path.join(os.path.dirname(os.path.abspath(HATO_BIN)), "hato-bench")


def bench(*args, timeout=60):
    assert os.path.exists(BENCH), f"hato-bench is not built next to {HATO_BIN}"
    r = subprocess.run([BENCH, *map(str, args), "--json", "-d", "30"], capture_output=True,
                       timeout=timeout, text=True)
    assert "runtime error" not in r.stderr and "AddressSanitizer" not in r.stderr, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else None
    return r.returncode, summary, r.stderr


@pytest.fixture
def roomy(broker_factory):
    """A broker whose queues hold a whole run: with the default limit (1,000
    queued QoS 1/2 messages per session, as Mosquitto) a subscriber that lags
    behind three unthrottled publishers loses messages by design."""
    return broker_factory("max_queued_messages 100000\n")


@pytest.mark.parametrize("qos", [0, 1, pytest.param(2, marks=pytest.mark.hato_only(
    "mosquitto 2.0.11 silently drops incoming QoS 2 publishes beyond max_inflight_messages "
    "(20) per client, and hato-bench keeps 64 in flight"))])
def test_run_counts_every_message_once(roomy, qos):
    rc, s, err = bench("run", "-p", roomy.port, "--pubs", 3, "--subs", 2, "-t", "hb/%i",
                       "-T", "hb/#", "-q", qos, "-n", 500, "--quiet")
    assert rc == 0, err
    assert s["expected"] == 3 * 2 * 500
    assert s["received"] == s["expected"]
    assert (s["lost"], s["duplicates"], s["reordered"], s["errors"]) == (0, 0, 0, 0)
    assert s["latency_us"]["p50"] <= s["latency_us"]["p99"] <= s["latency_us"]["max"]
    assert s["connected"] == 5


def test_expected_follows_the_filters(broker):
    # Subscriber i only matches publisher i: 2 of the 4 publishers are heard.
    rc, s, err = bench("run", "-p", broker.port, "--pubs", 4, "--subs", 2, "-t", "hb/%i",
                       "-T", "hb/%i", "-n", 100, "--quiet")
    assert rc == 0, err
    assert s["sent"] == 400 and s["expected"] == 200 and s["received"] == 200


def test_conn_mode_holds_and_reports(broker):
    rc, s, err = bench("conn", "-p", broker.port, "-c", 50, "--quiet")
    assert rc == 0, err
    assert "# connected 50" in err
    assert s["connected"] == 50 and s["connect_rate"] > 0


def test_retained_mode_receives_every_topic(broker):
    rc, s, err = bench("retained", "-p", broker.port, "-n", 2000, "--quiet")
    assert rc == 0, err
    assert s["sent"] == 2000 and s["received"] == 2000 and s["lost"] == 0


def test_bad_option_names_it():
    rc, s, err = bench("run", "-q", "7")
    assert rc == 2 and s is None
    assert "-q" in err and "7" in err


def test_refused_connection_is_an_error():
    port = free_port()  # nothing listens there
    rc, s, err = bench("run", "-p", port, "--pubs", 1, "--subs", 1, "-n", 1, "--idle", "0.2")
    assert rc == 1
    assert s["errors"] >= 1
    assert "refused" in err.lower()


class FaultyRelay:
    """A minimal MQTT 3.1.1 server for one subscriber and one publisher that
    forwards QoS 0 publishes with faults: it drops the 10th, sends the 20th
    twice and swaps the 30th and 31st."""

    def __init__(self):
        self.srv = socket.create_server(("127.0.0.1", 0))
        self.port = self.srv.getsockname()[1]
        self.sub = None
        self.sub_ready = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @staticmethod
    def packets(sock):
        buf = b""
        while True:
            data = sock.recv(65536)
            if not data:
                return
            buf += data
            while len(buf) >= 2:
                try:
                    length, body = read_varint(buf, 1)
                except IndexError:
                    break
                end = body + length
                if len(buf) < end:
                    break
                yield buf[:end]
                buf = buf[end:]

    def serve(self):
        self.srv.settimeout(20)
        threads = []
        for _ in range(2):
            conn, _ = self.srv.accept()
            t = threading.Thread(target=self.client, args=(conn,), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(20)

    def client(self, conn):
        conn.settimeout(20)
        n = 0
        held = None
        for p in self.packets(conn):
            kind = p[0] >> 4
            if kind == 1:  # CONNECT
                conn.sendall(b"\x20\x02\x00\x00")
            elif kind == 8:  # SUBSCRIBE: SUBACK granting QoS 0
                self.sub = conn
                conn.sendall(b"\x90\x03" + p[2:4] + b"\x00")
                self.sub_ready.set()
            elif kind == 3:
                self.sub_ready.wait(10)
                n += 1
                if n == 10:
                    continue
                if n == 20:
                    self.sub.sendall(p)
                if n == 30:
                    held = p
                    continue
                self.sub.sendall(p)
                if n == 31:
                    self.sub.sendall(held)
            elif kind == 12:  # PINGREQ
                conn.sendall(b"\xd0\x00")
            elif kind == 14:
                conn.close()
                return


def test_losses_duplicates_and_reordering_are_seen():
    relay = FaultyRelay()
    rc, s, err = bench("run", "-p", relay.port, "--pubs", 1, "--subs", 1, "-t", "hb/x",
                       "-T", "hb/x", "-n", 100, "--idle", "0.5", "--quiet")
    assert rc == 3, err
    assert s["expected"] == 100
    assert s["received"] == 100  # 99 distinct + 1 duplicate
    assert s["lost"] == 1
    assert s["duplicates"] == 1
    assert s["reordered"] == 1


def test_progress_lines_carry_rates_and_latency(broker):
    rc, s, err = bench("run", "-p", broker.port, "--pubs", 2, "--subs", 1, "-t", "hb/%i",
                       "-T", "hb/#", "-q", 1, "-n", 200)
    assert rc == 0, err
    assert re.search(r"sent 400 \(\d+/s\) received 400 \(\d+/s\) latency p50 [\d.]+ ms "
                     r"p99 [\d.]+ ms connected \d+", err), err


# -j N: the clients dealt over N processes (client i to process i mod N).
# The subscribers of one process hear publishers of the others, so every
# count below crosses processes and must come back merged, not per process.

@pytest.mark.parametrize("qos", [0, 1])
def test_jobs_merge_counts_across_processes(roomy, qos):
    rc, s, err = bench("run", "-p", roomy.port, "--pubs", 4, "--subs", 3, "-t", "hb/%i",
                       "-T", "hb/#", "-q", qos, "-n", 300, "-j", 3, "--quiet")
    assert rc == 0, err
    assert s["jobs"] == 3
    assert s["sent"] == 4 * 300
    assert s["expected"] == 4 * 3 * 300
    assert s["received"] == s["expected"]
    assert (s["lost"], s["duplicates"], s["reordered"], s["errors"]) == (0, 0, 0, 0)
    assert s["connected"] == 7
    assert 0 < s["latency_us"]["p50"] <= s["latency_us"]["p99"] <= s["latency_us"]["max"]
    assert 0 < s["gen_load"] <= 1.5  # busiest process's CPU / wall, about one core at most


def test_jobs_conn_mode_reports_once_with_the_total(broker):
    rc, s, err = bench("conn", "-p", broker.port, "-c", 50, "-j", 2, "--quiet")
    assert rc == 0, err
    assert err.count("# connected") == 1 and "# connected 50" in err
    assert s["connected"] == 50


def test_jobs_still_see_losses_duplicates_and_reordering():
    # Both clients land in process 0, process 1 has none: its empty result
    # must merge as zeros.
    relay = FaultyRelay()
    rc, s, err = bench("run", "-p", relay.port, "--pubs", 1, "--subs", 1, "-t", "hb/x",
                       "-T", "hb/x", "-n", 100, "--idle", "0.5", "-j", 2, "--quiet")
    assert rc == 3, err
    assert (s["expected"], s["received"], s["lost"], s["duplicates"], s["reordered"]) == \
        (100, 100, 1, 1, 1)


def test_jobs_option_is_bounded():
    rc, s, err = bench("run", "-j", 0)
    assert rc == 2 and s is None
    assert "-j" in err


def probe_flow(pub_port, sub_port, topic, timeout=20):
    """Until a QoS 0 probe published on pub_port arrives on sub_port (through a
    bridge): re-published every 0.2 s, polled with a deadline."""
    from mqttraw import PUBLISH, SUBACK, RawClient, publish, subscribe
    sub, pub = RawClient(sub_port), RawClient(pub_port)
    try:
        sub.connect("hb-probe-s")
        sub.send(subscribe(1, [(topic, 0)]))
        sub.expect(SUBACK)
        pub.connect("hb-probe-p")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pub.send(publish(topic, b"probe"))
            try:
                if sub.recv(0.2).type == PUBLISH:
                    return
            except TimeoutError:
                pass
        raise AssertionError(f"no probe from port {pub_port} reached port {sub_port}")
    finally:
        sub.close()
        pub.close()


def test_sub_port_puts_the_subscribers_on_another_broker(broker_factory):
    # bench/bridge's runs: publishers on one broker, subscribers on another.
    far = broker_factory("max_queued_messages 100000\n")
    lone = broker_factory()
    # Two unconnected brokers: the subscribers (on far) hear nothing of the
    # publishers (on lone), and every expected message is counted lost.
    rc, s, err = bench("run", "-p", lone.port, "--sub-port", far.port, "--pubs", 2, "--subs", 2,
                       "-t", "hb/%i", "-T", "hb/%i", "-n", 50, "--idle", "0.5", "-i", "hbl",
                       "--quiet")
    assert rc == 3, err
    assert (s["sent"], s["expected"], s["received"], s["lost"]) == (100, 100, 0, 100)
    far.wait_log(r"as hbl-\d+-s1\b")
    lone.wait_log(r"as hbl-\d+-p1\b")
    assert not re.search(r"as hbl-\d+-s", lone.log) and not re.search(r"as hbl-\d+-p", far.log)
    # A bridge from near to far carries them: exact counts end to end.
    near = broker_factory(f"max_queued_messages 100000\nconnection hb\naddress 127.0.0.1:{far.port}\n"
                          "remote_clientid hbbridge\ncleansession true\ntopic hb/# out 1\n")
    probe_flow(near.port, far.port, "hb/probe")
    rc, s, err = bench("run", "-p", near.port, "--sub-port", far.port, "--pubs", 2, "--subs", 2,
                       "-t", "hb/%i", "-T", "hb/%i", "-q", 1, "-n", 500, "--quiet")
    assert rc == 0, err
    assert (s["expected"], s["received"], s["lost"], s["duplicates"], s["reordered"]) == \
        (1000, 1000, 0, 0, 0)
    assert s["connected"] == 4


def test_sub_port_is_checked():
    rc, s, err = bench("run", "--sub-port", 0)
    assert rc == 2 and s is None
    assert "--sub-port" in err


def test_go_stdin_holds_the_publishers_until_told(broker):
    # bench/cluster's runs: the caller sees every subscriber in, checks
    # something elsewhere (a cluster's interest), then lets them publish.
    p = subprocess.Popen([BENCH, "run", "-p", str(broker.port), "--pubs", "2", "--subs", "2",
                          "-t", "hb/%i", "-T", "hb/%i", "-n", "100", "-i", "hbgo", "--go-stdin",
                          "--json", "--quiet", "-d", "30"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert p.stderr.readline() == "# subscribed 2\n"
        broker.wait_log(r"as hbgo-\d+-s1\b")
        # Held: no publisher connects while the go has not come.
        assert not re.search(r"as hbgo-\d+-p", broker.log)
        assert p.poll() is None
        p.stdin.write("go\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    s = json.loads(out.strip().splitlines()[-1])
    assert (s["sent"], s["expected"], s["received"], s["lost"]) == (200, 200, 200, 0)


def test_go_stdin_with_jobs_reports_the_total_once(broker):
    p = subprocess.Popen([BENCH, "run", "-p", str(broker.port), "--pubs", "3", "--subs", "3",
                          "-t", "hb/%i", "-T", "hb/%i", "-n", "50", "-j", "2", "--go-stdin",
                          "--json", "--quiet", "-d", "30"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        assert p.stderr.readline() == "# subscribed 3\n"
        out, err = p.communicate("go\n", timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    assert "# subscribed" not in err
    assert json.loads(out.strip().splitlines()[-1])["received"] == 150


def test_go_stdin_without_a_go_ends_at_the_time_bound(broker):
    p = subprocess.Popen([BENCH, "run", "-p", str(broker.port), "--go-stdin", "--quiet",
                          "-d", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        p.wait(timeout=30)  # stdin held open (its EOF would be a go too)
        err = p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdin.close()
    assert p.returncode == 1 and "--go-stdin: no go within -d 1 s" in err, err
    assert "# subscribed 1" in err


@pytest.mark.parametrize("version", [4, 5])
def test_persistent_subscribers_keep_their_sessions(broker, version):
    rc, s, err = bench("run", "-p", broker.port, "--pubs", 1, "--subs", 1, "-t", "hb/p",
                       "-T", "hb/p", "-q", 1, "-n", 20, "-V", version, "-i", "hbper",
                       "--persistent", "--quiet")
    assert rc == 0, err
    assert s["received"] == 20
    # The subscriber asked for a kept session; the publisher did not.
    level = 5 if version == 5 else 2
    sub_id = re.search(rf"as (hbper-\d+-s0) \(p{level}, c0,", broker.log).group(1)
    assert re.search(rf"as hbper-\d+-p0 \(p{level}, c1,", broker.log)
    # The session outlived hato-bench's disconnect (in 5.0 because --persistent
    # sent a Session Expiry Interval: without one the session ends with the
    # connection, MQTT 5.0 section 3.1.2.11.2).
    from mqttraw import RawClient
    with RawClient(broker.port, version=version) as c:
        ack = c.connect(sub_id, clean=False,
                        properties=[("session_expiry", 60)] if version == 5 else None)
        assert ack.reason == 0 and ack.session_present
