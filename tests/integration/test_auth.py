"""Password files, allow_anonymous and login failures (issue 4).

Files written by Mosquitto's own mosquitto_passwd are used as they are, and
files written by hato-passwd are given to a real Mosquitto."""

import os
import re
import signal
import socket

import pytest

from authutil import (FAST, Mosquitto, hato_passwd, mosquitto_passwd, mqtt_pub, mqtt_sub_once,
                      wait_suback, write)
from conftest import REFERENCE, HATO_BIN, free_port, LoggedProcess
from mqttraw import (CONNACK, DISCONNECT, PINGRESP, RawClient, closed_by_broker, connect,
                     connected_client, pingreq)



def pw_broker(broker_factory, tmp_path, pwfile, extra=FAST, anonymous=False):
    return broker_factory(f"password_file {pwfile}\n" + extra, anonymous=anonymous)


def refused(broker, version=4, **kw):
    """CONNECT that must be refused: returns the CONNACK reason, checks that Session
    Present is 0 (MQTT-3.2.2-4, MQTT 5: MQTT-3.2.2-6) and that the connection is
    then closed (MQTT-3.2.2-5, MQTT 5: MQTT-3.2.2-7)."""
    c = RawClient(broker, version=version)
    ack = c.connect("cid-" + str(version), **kw)
    assert ack.body[0] == 0, ack
    closed_by_broker(c)
    c.close()
    return ack.reason


def accepted(broker, version=4, **kw):
    c = RawClient(broker, version=version)
    ack = c.connect("ok-" + str(version), **kw)
    assert ack.reason == 0, ack
    c.send(pingreq())
    c.expect(PINGRESP)
    c.close()


def test_mosquitto_passwd_file_accepted(broker_factory, tmp_path):
    """A file written by mosquitto_passwd ($7$ and -H sha512 $6$) works in hato as it is."""
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "alice pw")
    mosquitto_passwd("-H", "sha512", "-b", pw, "bob", "bob-pw")
    b = pw_broker(broker_factory, tmp_path, pw)
    for v in (3, 4, 5):
        accepted(b, v, username="alice", password="alice pw")
        accepted(b, v, username="bob", password="bob-pw")


def test_wrong_password_refused_v311_0x05_MQTT_3_2_2_5(broker_factory, tmp_path):
    """Wrong password, unknown user, missing password: CONNACK 0x05 on MQTT 3.1.1 and
    3.1, then the connection closes (MQTT-3.2.2-5)."""
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    b = pw_broker(broker_factory, tmp_path, pw)
    for v in (3, 4):
        assert refused(b, v, username="alice", password="wrong") == 0x05
        assert refused(b, v, username="mallory", password="right") == 0x05
        assert refused(b, v, username="alice") == 0x05
        assert refused(b, v) == 0x05  # anonymous


@pytest.mark.hato_only("Mosquitto 2.0.11 answers 0x87 to a wrong password; 0x86 is the MQTT 5 "
                       "code for it, which issue 4 asks for")
def test_wrong_password_refused_v5_0x86_anonymous_0x87_MQTT_3_2_2_7(broker_factory, tmp_path):
    """MQTT 5: bad user name or password 0x86; anonymous where not allowed 0x87; the
    connection is closed after the CONNACK (MQTT-3.2.2-7)."""
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    b = pw_broker(broker_factory, tmp_path, pw)
    assert refused(b, 5, username="alice", password="wrong") == 0x86
    assert refused(b, 5, username="nobody", password="x") == 0x86
    assert refused(b, 5, username="alice") == 0x86
    assert refused(b, 5) == 0x87
    assert refused(b, 5, password="right") == 0x87  # a password without a user name


@pytest.mark.hato_only("log format")
def test_failure_logged_with_user_and_address_never_password(broker_factory, tmp_path):
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    b = pw_broker(broker_factory, tmp_path, pw)
    assert refused(b, 4, username="alice", password="s3cr3t-wrong") == 0x05
    line = b.wait_log(r"refused: bad user name or password")
    assert "user 'alice'" in line and "[127.0.0.1:" in line and "cid-4" in line
    assert "s3cr3t-wrong" not in b.log


@pytest.mark.hato_only("log format")
def test_connection_and_disconnection_logged(broker_factory, tmp_path):
    """Every connection and disconnection: client id, user name and address."""
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    b = pw_broker(broker_factory, tmp_path, pw)
    c = connected_client(b, "logme", username="alice", password="right")
    c.close()
    b.wait_log(r"New connection from 127\.0\.0\.1:\d+")
    b.wait_log(r"New client connected from 127\.0\.0\.1:\d+ as logme .*u'alice'")
    b.wait_log(r"Client logme \[127\.0\.0\.1:\d+\] \(user 'alice'\) disconnected")
    assert "right" not in b.log.replace("right'", "")


def test_anonymous_refused_by_default_with_listener(broker_factory):
    """allow_anonymous defaults to false when a listener is configured (Mosquitto 2.0),
    and without a password file a user name alone does not get in either."""
    b = broker_factory(FAST, anonymous=False)
    assert refused(b, 4) == 0x05
    assert refused(b, 5) == 0x87
    assert refused(b, 4, username="someone", password="x") == 0x05


def test_allow_anonymous_with_password_file(broker_factory, tmp_path):
    """allow_anonymous true next to a password file: anonymous clients get in, a user
    name is still checked."""
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    b = pw_broker(broker_factory, tmp_path, pw, anonymous=True)
    accepted(b, 4)
    accepted(b, 4, username="alice", password="right")
    assert refused(b, 4, username="alice", password="wrong") == 0x05


def test_blank_line_is_not_a_user(broker_factory, tmp_path):
    """Mosquitto advisory: a blank line in the password file is never a user (an empty
    user name with an empty password); it is reported with its line number."""
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    with open(pw, "a") as f:
        f.write("\n\n")
    b = pw_broker(broker_factory, tmp_path, pw)
    if REFERENCE == "hato":
        b.wait_log(re.escape(str(pw)) + r":2: blank line ignored")
    assert refused(b, 4, username="", password="") == 0x05
    # (Mosquitto 2.0.11 says 0x87 where MQTT 5 has 0x86 for a bad password.)
    assert refused(b, 5, username="", password="") == (0x86 if REFERENCE == "hato" else 0x87)
    accepted(b, 4, username="alice", password="right")


@pytest.mark.parametrize("line,user,reason", [
    ("bob", "bob", "not 'user:hash'"),
    ("bob:", "bob", "has no password hash"),
    ("bob:right", "bob", "unknown hash type"),  # plain text: never compared as is
    ("bob:$7$101$c2FsdA==$AAAA", "bob", "bad salt"),
    (":$6$x$y", "", "empty user name"),
])
def test_malformed_line_is_not_a_user(broker_factory, tmp_path, line, user, reason):
    """A malformed password line is never a user: it is reported with FILE:LINE and
    why, and the rest of the file works (as in Mosquitto, so its files load as they
    are)."""
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    text = pw.read_text()
    pw.write_text(text + ("" if text.endswith("\n") else "\n") + line + "\n")
    b = pw_broker(broker_factory, tmp_path, pw)
    if REFERENCE == "hato":
        b.wait_log(re.escape(f"Error: {pw}:2: ") + ".*" + re.escape(reason) + ".*line ignored")
    for pwd in ("right", "", "x", "$6$x$y", "AAAA"):
        assert refused(b, 4, username=user, password=pwd) == 0x05
    accepted(b, 4, username="alice", password="right")


@pytest.mark.hato_only("runs hato directly")
def test_missing_password_file_stops_startup(tmp_path):
    conf = write(tmp_path / "h.conf",
                 f"listener {free_port()} 127.0.0.1\npassword_file {tmp_path}/nope\n")
    p = LoggedProcess([HATO_BIN, "-c", str(conf)])
    assert p.proc.wait(timeout=30) != 0
    p.reader.join(timeout=10)
    assert f"{tmp_path}/nope: cannot read password file: No such file or directory" in p.log


def test_per_listener_settings(broker_factory, tmp_path):
    """per_listener_settings true: each listener has its own password file and
    allow_anonymous."""
    p1, p2 = free_port(), free_port()
    pw1, pw2 = tmp_path / "pw1", tmp_path / "pw2"
    mosquitto_passwd("-c", "-b", pw1, "alice", "a")
    mosquitto_passwd("-c", "-b", pw2, "bob", "b")
    b = broker_factory("per_listener_settings true\n" + FAST +
                       f"listener {p1} 127.0.0.1\npassword_file {pw1}\n"
                       f"listener {p2} 127.0.0.1\npassword_file {pw2}\nallow_anonymous true\n",
                       listener=False, anonymous=False)
    accepted(p1, 4, username="alice", password="a")
    assert refused(p1, 4, username="bob", password="b") == 0x05
    assert refused(p1, 4) == 0x05
    accepted(p2, 4, username="bob", password="b")
    assert refused(p2, 4, username="alice", password="a") == 0x05
    accepted(p2, 4)
    assert b.proc.poll() is None


@pytest.mark.hato_only("Mosquitto 2.0 cannot read $argon2id$")
def test_argon2id_file(broker_factory, tmp_path):
    """hato-passwd -H argon2id writes $argon2id$ lines that the broker verifies."""
    pw = tmp_path / "passwd"
    hato_passwd("-c", "-H", "argon2id", "-b", pw, "carol", "c-pw")
    assert ":$argon2id$v=19$" in pw.read_text()
    b = pw_broker(broker_factory, tmp_path, pw)
    accepted(b, 5, username="carol", password="c-pw")
    assert refused(b, 5, username="carol", password="c-px") == 0x86


def test_hato_passwd_file_accepted_by_mosquitto(tmp_path):
    """The reverse direction: Mosquitto 2.0 accepts what hato-passwd writes ($7$ with
    default and custom iterations, and $6$)."""
    pw = tmp_path / "passwd"
    hato_passwd("-c", "-b", pw, "alice", "alice pw")
    hato_passwd("-I", "2000", "-b", pw, "bob", "bob pw")
    hato_passwd("-H", "sha512", "-b", pw, "dave", "dave pw")
    text = pw.read_text()
    assert "alice:$7$101$" in text and "bob:$7$2000$" in text and "dave:$6$" in text
    m = Mosquitto(tmp_path, f"allow_anonymous false\npassword_file {pw}\n")
    try:
        for user in ("alice", "bob", "dave"):
            r = mqtt_pub(m.port, "t", "x", user=user, password=f"{user} pw")
            assert r.returncode == 0, (user, r.stderr, m.log)
        r = mqtt_pub(m.port, "t", "x", user="alice", password="wrong")
        assert r.returncode != 0 and "not authorised" in r.stderr.lower()
    finally:
        m.stop()


@pytest.mark.hato_only("hato extension")
def test_failure_slowdown_doubles_per_address(broker_factory, tmp_path):
    """hato extension: repeated failures from one address are answered later and later
    (auth_fail_delay doubling up to auth_fail_delay_max); the delays are read from the
    log, not measured."""
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    b = pw_broker(broker_factory, tmp_path, pw, "auth_fail_delay 100\nauth_fail_delay_max 350\n")
    delays = []
    for i in range(4):
        assert refused(b, 4, username="alice", password="bad") == 0x05
        line = b.wait_log(r"refused: bad user name or password", start=0 if not delays else mark)
        mark = b.mark()
        delays.append(int(re.search(r"answered after (\d+) ms", line).group(1)))
    assert delays == [100, 200, 350, 350]
    accepted(b, 4, username="alice", password="right")  # the right password still works


def client_from(b, source, version=4):
    """A RawClient whose connection comes from another loopback address."""
    c = RawClient.__new__(RawClient)
    c.version, c.timeout, c.buf = version, 5.0, bytearray()
    c.sock = socket.create_connection((b.host, b.port), timeout=5.0, source_address=(source, 0))
    return c


@pytest.mark.hato_only("hato extension")
def test_failure_delay_does_not_block_the_worker(broker_factory, tmp_path):
    """While a failed login waits for its (long) delay, the same worker thread keeps
    serving other clients: a client from another address connects and pings before
    the refusal."""
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    b = pw_broker(broker_factory, tmp_path, pw, "threads 1\nauth_fail_delay 3000\n")
    bad = RawClient(b)
    bad.send(connect("bad", username="alice", password="nope"))
    b.wait_log(r"Client bad .*refused: bad user name or password.*3000 ms")
    good = client_from(b, "127.0.0.2")
    assert good.connect("good", username="alice", password="right").reason == 0
    good.send(pingreq())
    good.expect(PINGRESP)
    # The refusal has not come yet; it does come, then the close.
    with pytest.raises(TimeoutError):
        bad.recv(0.05)
    ack = bad.expect(CONNACK, timeout=10)
    assert ack.reason == 0x05
    closed_by_broker(bad)
    good.close()
    bad.close()


@pytest.mark.hato_only("hato extension")
def test_logins_held_back_while_a_failure_waits(broker_factory, tmp_path):
    """hato extension (temporary ban): while a failed login from an address waits for
    its refusal, further logins from that address are refused without their password
    being checked, even a right one, and count as failures; other addresses are not
    affected."""
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    b = pw_broker(broker_factory, tmp_path, pw, "auth_fail_delay 2000\nauth_fail_delay_max 8000\n")
    bad = RawClient(b, version=5)
    bad.send(connect("bad", version=5, username="alice", password="nope"))
    b.wait_log(r"Client bad .*refused: bad user name or password.*2000 ms")
    held = RawClient(b, version=5)
    held.send(connect("held", version=5, username="alice", password="right"))
    line = b.wait_log(r"Client held .*refused: address held back after failed logins")
    assert "user 'alice'" in line and "answered after 4000 ms" in line
    other = client_from(b, "127.0.0.3", version=5)
    assert other.connect("other", username="alice", password="right").reason == 0
    assert bad.expect(CONNACK, timeout=10).reason == 0x86
    assert held.expect(CONNACK, timeout=15).reason == 0x86
    for c in (bad, held, other):
        c.close()
