"""Password checks run off the worker thread (issue 13; docs/internals/auth.md).

One worker (`threads 1`) serves every client. A login whose password is
verified against a deliberately slow argon2id hash is parked while a pool
thread checks it; meanwhile an anonymous client of the same worker connects,
subscribes, publishes and receives its message, all before the slow login's
CONNACK is sent. The order of events is what is checked: the broker's debug
line says the slow check is queued before the second client starts, and the
slow client's socket holds no CONNACK when the second client is done."""

import os
import re
import select
import signal

import pytest

from authutil import hato_passwd
from mqttraw import (CONNACK, PINGRESP, PUBLISH, SUBACK, RawClient, closed_by_broker, connect,
                     connected_client, pingreq, publish, publish_ok, recv_publish, subscribe,
                     subscribe_ok)

pytestmark = pytest.mark.hato_only("hato's password pool; argon2id hashes")

# argon2id with many passes: most of a second per check, far longer than a
# loopback round trip (the tests wait for events, never for this time).
SLOW_PASSES = "64"  # the most hato-passwd allows


@pytest.fixture
def slow(broker_factory, tmp_path):
    pw = tmp_path / "passwd"
    hato_passwd("-c", "-H", "argon2id", "-I", SLOW_PASSES, "-b", pw, "slow", "slow-pw")
    # Anonymous clients are allowed (they are not checked against the file):
    # the honest way to have a second client whose login needs no hashing.
    return broker_factory(f"threads 1\npassword_file {pw}\nauth_fail_delay 0\nlog_type all\n",
                          anonymous=True)


def queued(b, start, client_id):
    """Wait for the broker's line saying the client's password check is queued."""
    b.wait_log(re.escape(f"Client {client_id} [") + r"[^\]]*\] \(user '[^']*'\): password check "
               r"queued\.", start=start)


def has_data(client):
    """True when the broker has sent this client something (no waiting)."""
    r, _, _ = select.select([client.sock], [], [], 0)
    return bool(r) or bool(client.buf)


def test_second_client_served_while_password_is_checked(slow):
    """Client A's slow login does not stop client B of the same worker: B's
    CONNECT, SUBSCRIBE, PUBLISH and the delivery complete before A's CONNACK."""
    b = slow
    mark = b.mark()
    a = RawClient(b, timeout=30)
    a.send(connect("A", username="slow", password="slow-pw"))
    queued(b, mark, "A")

    with connected_client(b, "B") as c:
        subscribe_ok(c, 1, [("t/b", 0)])
        publish_ok(c, "t/b", b"from B")
        got = recv_publish(c)
        assert (got.topic, got.payload) == ("t/b", b"from B")
        c.send(pingreq())
        c.expect(PINGRESP)
        # B is done; A is still waiting for its password check.
        assert not has_data(a), "A got an answer before B's round trip finished"

    ack = a.expect(CONNACK, timeout=60)
    assert ack.reason == 0, ack
    a.send(pingreq())
    a.expect(PINGRESP)
    a.close()


def test_packets_pipelined_after_connect_run_in_order(slow):
    """SUBSCRIBE and PUBLISH sent right behind the CONNECT wait with it and run
    after the CONNACK, in order: CONNACK, SUBACK, then the message itself."""
    b = slow
    a = RawClient(b, timeout=60)
    a.send(connect("A", username="slow", password="slow-pw") +
           subscribe(1, [("t/a", 0)]) + publish("t/a", b"pipelined") + pingreq())
    assert a.expect(CONNACK).reason == 0
    assert a.expect(SUBACK).codes == [0]
    p = a.expect(PUBLISH)
    assert (p.topic, p.payload) == ("t/a", b"pipelined")
    a.expect(PINGRESP)
    a.close()


def test_wrong_password_and_unknown_user_refused_MQTT_3_2_2_5(slow):
    """A wrong password is refused with 0x05 (MQTT 3.1.1) and 0x86 (MQTT 5), then
    closed (MQTT-3.2.2-5). An unknown user's check is queued like a known one's
    (verified against a dummy hash): no shortcut tells names apart."""
    b = slow
    for version, client_id, user, expected in ((4, "w4", "slow", 0x05), (5, "w5", "slow", 0x86),
                                               (4, "u4", "nobody-here", 0x05)):
        mark = b.mark()
        c = RawClient(b, version=version, timeout=60)
        c.send(connect(client_id, version=version, username=user, password="wrong"))
        queued(b, mark, client_id)
        ack = c.expect(CONNACK)
        assert ack.reason == expected, (client_id, ack)
        assert ack.body[0] == 0
        closed_by_broker(c)
        c.close()


def test_client_gone_during_check_leaves_broker_healthy(slow):
    """A client that disconnects while its password is checked: the verdict
    finds it gone (or its answer goes nowhere); the broker serves others."""
    b = slow
    mark = b.mark()
    a = RawClient(b, timeout=30)
    a.send(connect("gone", username="slow", password="slow-pw") + subscribe(1, [("x", 0)]))
    queued(b, mark, "gone")
    a.close()
    # The verdict comes back and the connection is closed, with nothing left behind.
    b.wait_log(r"Client gone \[[^\]]*\] \(user 'slow'\) disconnected|"
               r"Connection from [^ ]+ closed", start=mark, timeout=60)
    with connected_client(b, "after") as c:
        c.send(pingreq())
        c.expect(PINGRESP)


def test_shutdown_during_check(broker_factory, tmp_path):
    """SIGTERM while a check runs: the broker stops cleanly (exit 0, no
    sanitizer report, nothing leaked) and drops the verdict."""
    pw = tmp_path / "passwd"
    hato_passwd("-c", "-H", "argon2id", "-I", SLOW_PASSES, "-b", pw, "slow", "slow-pw")
    b = broker_factory(f"threads 1\npassword_file {pw}\nlog_type all\n", anonymous=True)
    mark = b.mark()
    clients = []
    for i in range(3):  # two running (one per pool thread) and one queued
        a = RawClient(b, timeout=30)
        a.send(connect(f"s{i}", username="slow", password="slow-pw"))
        queued(b, mark, f"s{i}")
        clients.append(a)
    b.stop()  # checks exit status 0 and the sanitizer output
    for a in clients:
        a.close()


def test_reload_during_check_verifies_again(slow, tmp_path):
    """The password file changes (SIGHUP) while a login is checked: the verdict
    reached with the old file is not used; the login is checked again against
    the new one, where its password is wrong."""
    b = slow
    pw, new = tmp_path / "passwd", tmp_path / "passwd.new"
    hato_passwd("-c", "-H", "argon2id", "-I", SLOW_PASSES, "-b", new, "slow", "new-pw")
    mark = b.mark()
    a = RawClient(b, timeout=60)
    a.send(connect("R", username="slow", password="slow-pw"))
    queued(b, mark, "R")
    os.replace(new, pw)
    b.signal(signal.SIGHUP)
    b.wait_log(r"Reloaded password and ACL files", start=mark)
    ack = a.expect(CONNACK)
    assert ack.reason == 0x05, ack
    closed_by_broker(a)
    a.close()
    # The new password works.
    with connected_client(b, "R2", username="slow", password="new-pw", timeout=60):
        pass


def test_v5_authentication_method_still_refused(slow):
    """MQTT 5 enhanced authentication: no method is configured, so a CONNECT with
    an Authentication Method is refused with 0x8C as before (MQTT-4.12.0-1 area),
    without any password check."""
    c = RawClient(slow, version=5, timeout=30)
    c.send(connect("m5", version=5, username="slow", password="slow-pw",
                   properties=[("auth_method", "SCRAM-SHA-1")]))
    ack = c.expect(CONNACK)
    assert ack.reason == 0x8C, ack
    c.close()


def test_parallel_guesses_after_a_failure_are_held_back(broker_factory, tmp_path):
    """Parallel connections do not multiply an address's guesses: once it has
    failed logins, a second login from it while one of its checks is still
    running is refused at once, without a check ("held back"), as a login
    during its refusal delay always was."""
    pw = tmp_path / "passwd"
    hato_passwd("-c", "-H", "argon2id", "-I", SLOW_PASSES, "-b", pw, "slow", "slow-pw")
    b = broker_factory(f"threads 1\npassword_file {pw}\nauth_fail_delay 1\n"
                       "auth_fail_delay_max 1\nlog_type all\n", anonymous=True)
    c0 = RawClient(b, timeout=60)
    assert c0.connect("g0", username="slow", password="guess0").reason == 0x05
    c0.close()
    mark = b.mark()
    c1 = RawClient(b, timeout=60)
    c1.send(connect("g1", username="slow", password="guess1"))
    queued(b, mark, "g1")
    c2 = RawClient(b, timeout=60)
    assert c2.connect("g2", username="slow", password="slow-pw").reason == 0x05
    assert not has_data(c1), "g1's check should still be running"
    b.wait_log(r"Client g2 \[[^\]]*\] refused: address held back after failed logins",
               start=mark)
    assert c1.expect(CONNACK).reason == 0x05
    assert not re.search(r"Client g2 .*password check queued", "\n".join(b.lines[mark:]))
    c1.close()
    c2.close()
