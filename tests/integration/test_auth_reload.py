"""SIGHUP re-reads the password and ACL files (issue 4): connected clients lose
access they no longer have; a bad file is reported and the previous one kept."""

import re

import pytest
import signal

from conftest import REFERENCE
from authutil import FAST, hato_passwd, mosquitto_passwd, write
from mqttraw import (DISCONNECT, PINGRESP, RawClient, closed_by_broker, connected_client, pingreq,
                     publish_ok, recv_publish, subscribe_ok)



def reload(b):
    mark = b.mark()
    b.signal(signal.SIGHUP)
    # Mosquitto logs "Reloading config." and reloads before handling more packets.
    return b.wait_log(r"Reloaded password and ACL files\.|reload failed|Reloading config\.",
                      start=mark)


def start(broker_factory, tmp_path, acl_text):
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "apw")
    mosquitto_passwd("-b", pw, "bob", "bpw")
    acl = write(tmp_path / "acl", acl_text)
    b = broker_factory(f"password_file {pw}\nacl_file {acl}\n" + FAST,
                       anonymous=False)
    return b, pw, acl


def test_acl_change_applies_to_existing_subscription(broker_factory, tmp_path):
    """Mosquitto advisory: after an ACL reload, a subscription made under the old rules
    delivers only what the new rules allow (and again when access comes back)."""
    b, pw, acl = start(broker_factory, tmp_path,
                       "user alice\ntopic write a/#\nuser bob\ntopic read a/#\n")
    with connected_client(b, "bob", username="bob", password="bpw") as bob, \
            connected_client(b, "alice", username="alice", password="apw") as alice:
        subscribe_ok(bob, 1, [("a/#", 1)])
        publish_ok(alice, "a/1", b"x", qos=1)
        assert recv_publish(bob).topic == "a/1"
        write(acl, "user alice\ntopic write a/#\nuser bob\ntopic read a/public/#\n")
        reload(b)
        publish_ok(alice, "a/2", b"x", qos=1)
        publish_ok(alice, "a/public/3", b"x", qos=1)
        assert recv_publish(bob).topic == "a/public/3"
        bob.expect_nothing()
        write(acl, "user alice\ntopic write a/#\nuser bob\ntopic read a/#\n")
        reload(b)
        publish_ok(alice, "a/4", b"x", qos=1)
        assert recv_publish(bob).topic == "a/4"


def test_acl_added_on_reload_restricts_publish(broker_factory, tmp_path):
    b, pw, acl = start(broker_factory, tmp_path, "user alice\ntopic readwrite #\n")
    with connected_client(b, "alice", username="alice", password="apw", version=5) as alice:
        subscribe_ok(alice, 1, [("x/#", 0)])
        write(acl, "user alice\ntopic read #\n")
        reload(b)
        from mqttraw import PUBACK, publish
        alice.send(publish("x/1", b"m", qos=1, pid=3, version=5))
        assert alice.expect(PUBACK).reason == 0x87


@pytest.mark.hato_only("Mosquitto keeps a removed user connected")
def test_removed_user_is_disconnected(broker_factory, tmp_path):
    """hato's choice (Mosquitto keeps them): a user removed from the password file is
    disconnected at the reload (MQTT 5 is told: DISCONNECT 0x87); others stay."""
    b, pw, acl = start(broker_factory, tmp_path, "user bob\ntopic read #\nuser alice\n"
                       "topic read #\n")
    bob = connected_client(b, "bob", username="bob", password="bpw", version=5)
    alice = connected_client(b, "alice", username="alice", password="apw")
    hato_passwd("-D", pw, "bob")
    reload(b)
    got = closed_by_broker(bob)
    assert [p.type for p in got] == [DISCONNECT] and got[0].reason == 0x87
    b.wait_log(r"Client bob \[127\.0\.0\.1:\d+\] user 'bob' is no longer in the password file")
    alice.send(pingreq())
    alice.expect(PINGRESP)
    c = RawClient(b)
    assert c.connect("bob2", username="bob", password="bpw").reason == 0x05
    c.close()
    alice.close()
    bob.close()


def test_password_change_on_reload(broker_factory, tmp_path):
    b, pw, acl = start(broker_factory, tmp_path, "user alice\ntopic read #\n")
    hato_passwd("-b", pw, "alice", "new-pw")
    reload(b)
    c = RawClient(b)
    assert c.connect("a1", username="alice", password="apw").reason == 0x05
    c.close()
    connected_client(b, "a2", username="alice", password="new-pw").close()


@pytest.mark.hato_only("hato's reload log")
def test_bad_file_on_reload_keeps_previous(broker_factory, tmp_path):
    """A malformed ACL file or an unreadable password file at reload: logged with the
    file (and line), all the previous files stay in force, the broker keeps running."""
    b, pw, acl = start(broker_factory, tmp_path, "user alice\ntopic readwrite #\n")
    write(acl, "user alice\ntopic read a\ntopic bogus/#/x\n")
    assert "reload failed" in reload(b)
    assert f"{acl}:3: invalid topic filter 'bogus/#/x'" in b.log
    with connected_client(b, "a", username="alice", password="apw") as a:
        assert subscribe_ok(a, 1, [("x", 0)]).codes == [0]  # the old rules
    good = pw.read_text()
    pw.unlink()
    write(acl, "user alice\ntopic read a\n")
    assert "reload failed" in reload(b)
    assert f"{pw}: cannot read password file: No such file or directory" in b.log
    with connected_client(b, "a", username="alice", password="apw") as a:
        assert subscribe_ok(a, 1, [("x", 0)]).codes == [0]
    pw.write_text(good)
    assert "Reloaded" in reload(b)
    with connected_client(b, "a", username="alice", password="apw") as a:
        assert subscribe_ok(a, 1, [("x", 0)]).codes == [0x80]  # the new rules


def test_malformed_password_line_on_reload(broker_factory, tmp_path):
    """A malformed password line at reload is reported and is not a user; the other
    users of the new file are in force."""
    b, pw, acl = start(broker_factory, tmp_path, "user alice\ntopic readwrite #\n")
    hato_passwd("-b", pw, "alice", "new")
    pw.write_text(pw.read_text() + "carol\n")
    reload(b)
    if REFERENCE == "hato":
        b.wait_log(re.escape(f"{pw}:3: not 'user:hash'"))
    c = RawClient(b)
    assert c.connect("old", username="alice", password="apw").reason == 0x05
    c.close()
    connected_client(b, "new", username="alice", password="new").close()
