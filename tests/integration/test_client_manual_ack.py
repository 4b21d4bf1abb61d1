"""The client library's manual-acknowledge mode (hc_config.manual_ack,
hc_ack, hc_config.receive_maximum) against the real hato broker, through
tests/unit/client/manual_ack.c (commands on stdin, events on stdout).

What is observed is the broker's side of the flow: a QoS 1/2 message that
the library did not acknowledge is re-sent by the broker with DUP after a
reconnect (MQTT-4.4.0-1), one that was acknowledged is not; a QoS 2 message
is delivered to the caller once however often it is re-sent (MQTT-4.3.3);
and Receive Maximum bounds what the broker sends unacknowledged
(MQTT-3.3.4-9).
"""

import queue
import subprocess
import threading
import time

import pytest

import mqttraw as m
from cliutil import check_sanitizers, tool


class Driver:
    """manual_ack running against a broker; lines of its stdout in a queue."""

    def __init__(self, broker, client_id, version=4, receive_maximum=0):
        self.p = subprocess.Popen([tool("manual_ack"), broker.host, str(broker.port),
                                   str(version), client_id, str(receive_maximum)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.lines.put(line.decode().rstrip("\n"))

    def cmd(self, text):
        self.p.stdin.write(text.encode() + b"\n")
        self.p.stdin.flush()

    def expect(self, prefix, timeout=10):
        """Next line starting with prefix (earlier ones are kept in .seen)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no '{prefix}' line; seen: {self.seen}"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append(line)
            if line.startswith(prefix):
                return line.split(" ")

    def close(self):
        if self.p.poll() is None:
            try:
                self.cmd("quit")
            except BrokenPipeError:
                pass
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        err = self.p.stderr.read()
        check_sanitizers(err)
        return self.p.returncode, err


def messages(d):
    return [ln for ln in d.seen if ln.startswith("msg ")]


@pytest.fixture
def publisher(broker):
    c = m.connected_client(broker, "ma-pub")
    yield c
    c.close()


def reconnect(d):
    d.cmd("drop")
    d.expect("disconnected")
    d.cmd("connect")
    conn = d.expect("connected")
    assert conn[1] == "1", "the persistent session must be kept"


def resent_since(d, at):
    """'in PUBLISH' lines with DUP set among d.seen[at:]."""
    return [ln for ln in d.seen[at:] if ln.startswith("in PUBLISH") and ln.endswith(" 1")]


def test_qos1_not_acked_until_hc_ack_then_resent_with_dup_MQTT_4_4_0_1(broker, publisher):
    d = Driver(broker, "ma-q1")
    d.expect("connected")
    d.cmd("sub ma/q1 1")
    assert d.expect("suback")[1] == "1"
    m.publish_ok(publisher, "ma/q1", b"one", qos=1, pid=1)
    msg = d.expect("msg ")
    mid = msg[1]
    assert (msg[2], msg[3], msg[5], msg[6]) == ("1", "0", "ma/q1", "one")
    # Never acknowledged: the broker still holds it and re-sends it with
    # DUP on the next connection; the library does not deliver it twice.
    reconnect(d)
    again = d.expect("in PUBLISH")
    assert again[2] == mid and again[3] == "1", again
    # A sentinel after it proves the re-send was handled (not delivered).
    m.publish_ok(publisher, "ma/q1", b"sentinel", qos=0)
    assert d.expect("msg ")[6] == "sentinel"
    assert [x.split(" ")[6] for x in messages(d)] == ["one", "sentinel"]
    # hc_ack sends the PUBACK: after it the broker has nothing to re-send.
    d.cmd("ack " + mid)
    assert d.expect("ack ")[1:] == [mid, "0"]
    d.cmd("ack " + mid)
    assert d.expect("ack ")[1:] == [mid, "-3"], "a second hc_ack of the same id is HC_ERR_STATE"
    at = len(d.seen)
    reconnect(d)
    m.publish_ok(publisher, "ma/q1", b"after", qos=1, pid=2)
    nxt = d.expect("msg ")
    assert nxt[6] == "after" and nxt[3] == "0"
    assert not resent_since(d, at), f"'one' re-sent after its PUBACK: {d.seen}"
    d.cmd("ack " + nxt[1])
    assert d.expect("ack ")[2] == "0"
    rc, err = d.close()
    assert rc == 0, err.decode()


def test_hc_ack_unknown_id_or_disconnected_is_state_error(broker, publisher):
    d = Driver(broker, "ma-state")
    d.expect("connected")
    d.cmd("sub ma/st 1")
    d.expect("suback")
    d.cmd("ack 777")
    assert d.expect("ack ")[1:] == ["777", "-3"]
    m.publish_ok(publisher, "ma/st", b"x", qos=1, pid=3)
    mid = d.expect("msg ")[1]
    d.cmd("drop")
    d.expect("disconnected")
    d.cmd("ack " + mid)
    assert d.expect("ack ")[1:] == [mid, "-3"], "not connected: HC_ERR_STATE"
    d.cmd("connect")
    d.expect("connected 1")
    d.expect("in PUBLISH")  # re-sent with DUP, still pending
    d.cmd("ack " + mid)
    assert d.expect("ack ")[1:] == [mid, "0"], "the id stays pending across the reconnect"
    rc, err = d.close()
    assert rc == 0, err.decode()


def test_qos2_exactly_once_pubrec_only_after_hc_ack_MQTT_4_3_3(broker, publisher):
    d = Driver(broker, "ma-q2")
    d.expect("connected")
    d.cmd("sub ma/q2 2")
    assert d.expect("suback")[1] == "2"
    m.publish_ok(publisher, "ma/q2", b"two", qos=2, pid=4)
    msg = d.expect("msg ")
    mid = msg[1]
    assert msg[2] == "2" and msg[6] == "two"
    # No PUBREC yet: the broker re-sends the PUBLISH (DUP) after a reconnect,
    # and the library does not deliver it again.
    reconnect(d)
    again = d.expect("in PUBLISH")
    assert again[2] == mid and again[3] == "1"
    d.cmd("ack " + mid)
    assert d.expect("ack ")[1:] == [mid, "0"]
    # PUBREC sent: the broker releases it, the library answers PUBCOMP itself.
    rel = d.expect("in PUBREL")
    assert rel[2] == mid
    m.publish_ok(publisher, "ma/q2", b"sentinel", qos=2, pid=5)
    s = d.expect("msg ")
    assert s[6] == "sentinel"
    d.cmd("ack " + s[1])
    assert d.expect("ack ")[2] == "0"
    d.expect("in PUBREL")
    # After PUBCOMP nothing is pending on the broker: a reconnect re-sends
    # nothing, and "two" was delivered exactly once.
    at = len(d.seen)
    reconnect(d)
    m.publish_ok(publisher, "ma/q2", b"end", qos=0)
    assert d.expect("msg ")[6] == "end"
    assert [x.split(" ")[6] for x in messages(d)] == ["two", "sentinel", "end"]
    assert not resent_since(d, at), f"re-sent after PUBCOMP: {d.seen}"
    rc, err = d.close()
    assert rc == 0, err.decode()


def test_receive_maximum_bounds_unacknowledged_messages_MQTT_3_3_4_9(broker, publisher):
    d = Driver(broker, "ma-rm", version=5, receive_maximum=2)
    d.expect("connected")
    d.cmd("sub ma/rm 1")
    d.expect("suback")
    for i in range(5):
        m.publish_ok(publisher, "ma/rm", b"m%d" % i, qos=1, pid=10 + i)
    first = [d.expect("msg "), d.expect("msg ")]
    assert [x[6] for x in first] == ["m0", "m1"]
    # A sixth, QoS 0, is not held back by Receive Maximum: once it is here,
    # the broker has sent everything it was going to send unacknowledged.
    m.publish_ok(publisher, "ma/rm", b"q0", qos=0)
    got = d.expect("msg ")
    assert got[6] == "q0", f"more than Receive Maximum (2) unacknowledged: {d.seen}"
    for x in first:
        d.cmd("ack " + x[1])
    rest = []
    for _ in range(3):
        x = d.expect("msg ")
        rest.append(x[6])
        d.cmd("ack " + x[1])
    assert rest == ["m2", "m3", "m4"]
    rc, err = d.close()
    assert rc == 0, err.decode()
