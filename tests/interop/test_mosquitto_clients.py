"""Interop with the mosquitto command-line clients (Debian mosquitto-clients):
mosquitto_pub and mosquitto_sub against the broker, in MQTT 3.1.1 (-V 311)
and MQTT 5 (-V 5): QoS 0/1/2, -v output, -C count, retained messages and
clearing them with -r -n, null messages, v5 properties with -D, Will
options.

Every mosquitto_sub runs with -C and -W so it always exits on its own, and
every subprocess call has a timeout. A subscriber is known to be subscribed
when it prints a retained "sync" message published before it started; that
is the event the test waits for instead of sleeping.
"""

import itertools
import os
import queue
import shutil
import signal
import subprocess
import threading

import pytest

from mqttraw import PUBLISH, SUBACK, RawClient, publish, sub_opts, subscribe, v5_client

PUB = shutil.which("mosquitto_pub")
SUB = shutil.which("mosquitto_sub")
pytestmark = pytest.mark.skipif(not (PUB and SUB),
                                reason="mosquitto_pub/mosquitto_sub not installed "
                                       "(Debian package mosquitto-clients)")

VERSIONS = ["311", "5"]
_seq = itertools.count()


def _base(broker, version):
    return ["-h", broker.host, "-p", str(broker.port), "-V", version]


def pub(broker, version, *args, timeout=10):
    """Run mosquitto_pub to completion; return its CompletedProcess (checked)."""
    r = subprocess.run([PUB] + _base(broker, version) + list(args), stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    assert r.returncode == 0, f"mosquitto_pub {args} rc={r.returncode}: {r.stderr!r}"
    return r


class Sub:
    """mosquitto_sub in the background, its stdout lines in a queue."""

    def __init__(self, broker, version, topics, count, args=(), wait_s=5):
        self.sync = f"sync/{os.getpid()}/{next(_seq)}"
        # The retained sync message tells us when the subscription is active.
        c = RawClient(broker, version=4)
        c.connect(f"sync-{next(_seq)}")
        c.send(publish(self.sync, b"ready", qos=1, pid=1, retain=True))
        c.recv()
        c.close()
        cmd = [SUB] + _base(broker, version) + ["-C", str(count + 1), "-W", str(wait_s),
                                                "-t", self.sync]
        for t in topics:
            cmd += ["-t", t]
        cmd += list(args)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        first = self.line()
        assert "ready" in first or self.sync in first, f"expected the sync message, got {first!r}"
        self.broker = broker

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout=5):
        try:
            got = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("mosquitto_sub printed nothing") from None
        assert got is not None, f"mosquitto_sub ended: {self.proc.stderr.read()!r}"
        return got

    def finish(self, timeout=8):
        """Wait for mosquitto_sub to exit; return its exit status."""
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.close()

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        # Remove the retained sync message.
        c = RawClient(self.broker, version=4)
        c.connect(f"unsync-{next(_seq)}")
        c.send(publish(self.sync, b"", qos=1, pid=1, retain=True))
        c.recv()
        c.close()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_pub_sub_round_trip_verbose(broker, version, qos):
    s = Sub(broker, version, ["ic/rt/#"], count=2, args=["-v", "-q", str(qos)])
    pub(broker, version, "-q", str(qos), "-t", "ic/rt/a", "-m", "hello world")
    pub(broker, version, "-q", str(qos), "-t", "ic/rt/b/c", "-m", "second")
    assert s.line() == "ic/rt/a hello world"
    assert s.line() == "ic/rt/b/c second"
    assert s.finish() == 0  # -C reached: clean exit


@pytest.mark.parametrize("version", VERSIONS)
def test_qos_reported_is_minimum_of_pub_and_sub(broker, version):
    s = Sub(broker, version, ["ic/q/t"], count=3, args=["-q", "1", "-F", "%q %p"])
    # One message at a time: each mosquitto_pub is its own client, and two
    # clients' messages are not ordered (MQTT-4.6.0-6 orders per publisher).
    for q, want in ((0, "0 sent0"), (1, "1 sent1"), (2, "1 sent2")):
        pub(broker, version, "-q", str(q), "-t", "ic/q/t", "-m", f"sent{q}")
        assert s.line() == want
    assert s.finish() == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_count_option_exits_after_n_messages(broker, version):
    s = Sub(broker, version, ["ic/count"], count=3)
    # One at a time (separate clients are not ordered, MQTT-4.6.0-6); the
    # two after the third find the subscriber gone or going: -C 3 exits.
    for i in range(3):
        pub(broker, version, "-t", "ic/count", "-m", f"m{i}")
        assert s.line() == f"m{i}"
    for i in range(3, 5):
        pub(broker, version, "-t", "ic/count", "-m", f"m{i}")
    assert s.finish() == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_retained_message_then_cleared_with_r_n(broker, version):
    pub(broker, version, "-r", "-q", "1", "-t", "ic/ret", "-m", "kept")
    s = Sub(broker, version, ["ic/ret"], count=1, args=["-F", "%r %t %p"])
    assert s.line() == "1 ic/ret kept"
    assert s.finish() == 0
    pub(broker, version, "-r", "-n", "-t", "ic/ret")  # zero-length retained: clear
    c, _ = v5_client(broker, "ic-ret-check")
    c.send(subscribe(1, [("ic/ret", sub_opts(0))], version=5))
    c.expect(SUBACK)
    c.expect_nothing(0.3)
    c.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_null_message(broker, version):
    s = Sub(broker, version, ["ic/null"], count=1, args=["-F", "%t len=%l"])
    pub(broker, version, "-n", "-q", "1", "-t", "ic/null")
    assert s.line() == "ic/null len=0"
    assert s.finish() == 0


def test_v5_properties_with_D(broker):
    s = Sub(broker, "5", ["ic/props"], count=1, args=["-F", "%C|%R|%D|%P|%F|%p"])
    pub(broker, "5", "-t", "ic/props", "-m", "body",
        "-D", "publish", "content-type", "text/plain",
        "-D", "publish", "response-topic", "ic/reply",
        "-D", "publish", "correlation-data", "c0rr",
        "-D", "publish", "user-property", "k1", "v1",
        "-D", "publish", "user-property", "k2", "v2",
        "-D", "publish", "payload-format-indicator", "1")
    line = s.line()
    assert line.startswith("text/plain|ic/reply|c0rr|"), line
    assert "k1:v1" in line and "k2:v2" in line and line.index("k1") < line.index("k2")
    assert line.endswith("|1|body"), line
    assert s.finish() == 0


def test_v5_message_expiry_with_D(broker):
    s = Sub(broker, "5", ["ic/exp"], count=1, args=["-F", "%E %p"])
    pub(broker, "5", "-t", "ic/exp", "-m", "e", "-D", "publish", "message-expiry-interval", "60")
    expiry, payload = s.line().split(" ")
    assert payload == "e" and 55 <= int(expiry) <= 60
    assert s.finish() == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_will_options_published_on_abnormal_exit(broker, version):
    watcher = RawClient(broker, version=5)
    watcher.connect("ic-will-watch")
    watcher.send(subscribe(1, [("ic/will/#", sub_opts(1, retain_as_published=True))],
                           version=5))
    watcher.expect(SUBACK)
    # mosquitto_pub -l stays connected reading stdin; SIGKILL drops the TCP
    # connection without DISCONNECT, so the broker publishes the Will.
    proc = subprocess.Popen([PUB] + _base(broker, version) + [
        "-l", "-q", "1", "-t", "ic/will/data", "-i", f"ic-will-{version}",
        "--will-topic", "ic/will/gone", "--will-payload", "dead", "--will-qos", "1",
        "--will-retain"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    try:
        proc.stdin.write(b"alive\n")
        proc.stdin.flush()
        m = watcher.expect(PUBLISH)  # it is connected and publishing
        assert (m.topic, m.payload) == ("ic/will/data", b"alive")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
        m = watcher.expect(PUBLISH)
        assert (m.topic, m.payload, m.qos, m.retain) == ("ic/will/gone", b"dead", 1, True)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
    pub(broker, version, "-r", "-n", "-t", "ic/will/gone")
    watcher.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_clean_exit_sends_no_will(broker, version):
    watcher, _ = v5_client(broker, "ic-nowill-watch")
    watcher.send(subscribe(1, [("ic/nowill/#", 0)], version=5))
    watcher.expect(SUBACK)
    pub(broker, version, "-t", "ic/nowill/data", "-m", "x", "--will-topic", "ic/nowill/gone",
        "--will-payload", "dead")
    assert watcher.expect(PUBLISH).topic == "ic/nowill/data"
    watcher.expect_nothing(0.3)
    watcher.close()


def test_mixed_versions_311_publisher_5_subscriber(broker):
    s = Sub(broker, "5", ["ic/mix"], count=1, args=["-F", "%q %r %p", "-q", "2"])
    pub(broker, "311", "-q", "2", "-t", "ic/mix", "-m", "from311")
    assert s.line() == "2 0 from311"
    assert s.finish() == 0


def test_subscriber_timeout_W_exits_when_nothing_arrives(broker):
    # -W ends a subscriber that gets nothing: the broker must not keep it
    # alive or send it anything unexpected.
    s = Sub(broker, "5", ["ic/silent"], count=1, wait_s=1)
    assert s.finish(timeout=8) == 27  # MOSQ_ERR_TIMEOUT
