"""Persistence across a clean restart (SIGTERM, then a new broker on the same store):
retained messages, sessions, subscriptions with their options and identifiers, queued
QoS 0/1/2 messages, in-flight state in both directions, expiry that keeps counting."""

import time

from mqttraw import (PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, RawClient, ack, connect, pingreq,
                     connected_client, disconnect, drain, publish, publish_ok, recv_publish,
                     sub_opts, subscribe, subscribe_ok, v5_client, CONNACK, SUBACK)
from persistkit import start


def leave(c):
    c.send(disconnect())
    c.expect_closed(5)
    c.close()


def test_restart_keeps_retained_sessions_subscriptions_and_queues(tmp_path):
    """Everything durable is back after a clean stop: retained messages (a cleared one stays
    cleared, MQTT-3.3.1-10), persistent sessions with their subscriptions (MQTT-3.1.2-4),
    queued QoS 1/2 messages in order and QoS 0 ones when queue_qos0_messages is set
    (MQTT-3.1.2-5), MQTT 5 subscription identifiers (MQTT-3.3.4-3)."""
    store = tmp_path / "store"
    store.mkdir()
    extra = "queue_qos0_messages true\n"
    b = start(tmp_path, store, extra=extra)
    s3 = connected_client(b, "keep-v3", clean=False)
    subscribe_ok(s3, 1, [("q/#", 2), ("$share/g/sh/#", 1)])
    leave(s3)
    s5, _ = v5_client(b, "keep-v5", clean=True, properties=[("session_expiry", 3600)])
    s5.send(subscribe(1, [("t/#", sub_opts(qos=1))], version=5,
                      properties=[("subscription_id", 7)]))
    assert s5.expect(SUBACK).codes == [1]
    leave(s5)
    with connected_client(b, "pub") as pub:
        publish_ok(pub, "r/1", b"r1", qos=1, pid=1, retain=True)
        publish_ok(pub, "r/2", b"r2", qos=1, pid=2, retain=True)
        publish_ok(pub, "r/2", b"", qos=1, pid=3, retain=True)  # cleared
        publish_ok(pub, "q/a", b"a0", qos=0)
        publish_ok(pub, "q/a", b"a1", qos=1, pid=4)
        publish_ok(pub, "q/a", b"a2", qos=2, pid=5)
        publish_ok(pub, "t/x", b"x1", qos=2, pid=6)  # downgraded to the granted QoS 1
        leave(pub)
    b.stop()

    b2 = start(tmp_path, store, extra=extra)
    line = b2.wait_log(r"Persistence: restored")
    assert "restored 2 sessions (3 subscriptions), 4 queued" in line, line
    assert "1 retained message" in line, line
    c3 = connected_client(b2, "keep-v3", clean=False)
    assert c3.connack.session_present
    got = [recv_publish(c3) for _ in range(3)]
    assert [(p.payload, p.qos) for p in got] == [(b"a0", 0), (b"a1", 1), (b"a2", 2)]
    c5, connack = v5_client(b2, "keep-v5", clean=False, properties=[("session_expiry", 3600)])
    assert connack.session_present
    p = recv_publish(c5)
    assert (p.topic, p.payload, p.qos) == ("t/x", b"x1", 1)
    assert p.props.get("subscription_id") in (7, [7])
    # The subscriptions are live again: a new message reaches both.
    with connected_client(b2, "pub2") as pub:
        publish_ok(pub, "q/b", b"b1", qos=1, pid=1)
        publish_ok(pub, "t/y", b"y1", qos=1, pid=2)
    assert recv_publish(c3).payload == b"b1"
    assert recv_publish(c5).payload == b"y1"
    with connected_client(b2, "pub3") as pub:
        publish_ok(pub, "sh/1", b"shared", qos=1, pid=1)  # the shared subscription too
    assert recv_publish(c3).payload == b"shared"
    # Retained: r/1 only.
    with connected_client(b2, "ret") as r:
        subscribe_ok(r, 1, [("r/#", 1)])
        got = [p for p in drain(r) if p.type == PUBLISH]
        assert [(p.topic, p.payload, p.retain) for p in got] == [("r/1", b"r1", True)]
    leave(c3)
    leave(c5)
    b2.stop()


def test_restart_incoming_qos2_awaiting_pubrel_is_not_delivered_twice_MQTT_4_3_3(tmp_path):
    """A QoS 2 PUBLISH acknowledged with PUBREC before the restart and re-sent (DUP) after
    it is acknowledged again but not delivered a second time (MQTT-4.3.3-2: exactly once);
    its PUBREL is then answered with PUBCOMP."""
    store = tmp_path / "store"
    store.mkdir()
    b = start(tmp_path, store)
    sub = connected_client(b, "s", clean=False)
    subscribe_ok(sub, 1, [("e/#", 2)])
    pub = connected_client(b, "p2", clean=False)
    pub.send(publish("e/1", b"once", qos=2, pid=9))
    assert pub.expect(PUBREC).pid == 9
    assert recv_publish(sub).payload == b"once"
    pub.close()
    leave(sub)
    b.stop()

    b2 = start(tmp_path, store)
    assert "1 QoS 2 id awaiting PUBREL" in b2.wait_log(r"Persistence: restored")
    sub = connected_client(b2, "s", clean=False)
    pub = connected_client(b2, "p2", clean=False)
    assert pub.connack.session_present
    pub.send(publish("e/1", b"once", qos=2, pid=9, dup=True))
    assert pub.expect(PUBREC).pid == 9
    pub.send(ack(PUBREL, 9))
    comp = pub.expect(PUBCOMP)
    assert comp.pid == 9
    sub.expect_nothing(0.5)
    leave(pub)
    leave(sub)
    b2.stop()


def test_restart_resends_outgoing_inflight_with_same_packet_id_MQTT_4_4_0_1(tmp_path):
    """Outgoing QoS 1 PUBLISH not acknowledged before the restart is re-sent with DUP and the
    same packet id; a QoS 2 delivery whose PUBREC arrived continues with PUBREL, never a
    second PUBLISH (MQTT-4.4.0-1, MQTT-4.3.3-2)."""
    store = tmp_path / "store"
    store.mkdir()
    b = start(tmp_path, store)
    sub = connected_client(b, "inflight", clean=False)
    subscribe_ok(sub, 1, [("f/1", 1), ("f/2", 2)])
    with connected_client(b, "pub") as pub:
        publish_ok(pub, "f/1", b"one", qos=1, pid=1)
        publish_ok(pub, "f/2", b"two", qos=2, pid=2)
    p1 = sub.expect(PUBLISH)
    p2 = sub.expect(PUBLISH)
    if p1.qos == 2:
        p1, p2 = p2, p1
    sub.send(ack(PUBREC, p2.pid))
    assert sub.expect(PUBREL).pid == p2.pid
    sub.close()  # neither PUBACK nor PUBCOMP
    b.wait_log(r"Client inflight .*disconnected")
    b.stop()

    b2 = start(tmp_path, store)
    assert "2 in-flight messages" in b2.wait_log(r"Persistence: restored")
    sub = connected_client(b2, "inflight", clean=False)
    assert sub.connack.session_present
    got = {}
    for _ in range(2):
        p = sub.recv()
        got[p.type] = p
    assert got[PUBLISH].pid == p1.pid and got[PUBLISH].dup and got[PUBLISH].payload == b"one"
    assert got[PUBREL].pid == p2.pid
    sub.send(ack(PUBACK, p1.pid))
    sub.send(ack(PUBCOMP, p2.pid))
    sub.expect_nothing(0.5)
    leave(sub)
    b2.stop()

    b3 = start(tmp_path, store)
    assert "0 queued and 0 in-flight" in b3.wait_log(r"Persistence: restored")
    b3.stop()


def test_stop_with_subscriber_connected_keeps_qos1_packet_ids_MQTT_4_4_0_1(tmp_path):
    """The packet id of a QoS 1 delivery is saved when its connection goes, not when it is
    sent: a broker stopped while the subscriber is still connected (no disconnect first)
    must still save it, so the restart re-sends the same packet id with DUP (MQTT-4.4.0-1)
    and nothing acknowledged comes again."""
    store = tmp_path / "store"
    store.mkdir()
    b = start(tmp_path, store)
    sub = connected_client(b, "stillhere", clean=False)
    subscribe_ok(sub, 1, [("k/#", 1)])
    with connected_client(b, "pub") as pub:
        for i in range(4):
            publish_ok(pub, "k/%d" % i, b"m%d" % i, qos=1, pid=i + 1)
    got = [sub.expect(PUBLISH) for _ in range(4)]
    assert [p.payload for p in got] == [b"m0", b"m1", b"m2", b"m3"]
    for p in got[:2]:
        sub.send(ack(PUBACK, p.pid))
    # Both PUBACKs are handled (and their entries deleted) before the stop: a PINGREQ
    # after them is answered in order.
    sub.send(pingreq())
    assert sub.recv().type == PINGRESP
    b.stop()  # SIGTERM with the subscriber connected
    sub.close()

    b2 = start(tmp_path, store)
    assert "0 queued and 2 in-flight" in b2.wait_log(r"Persistence: restored")
    sub = connected_client(b2, "stillhere", clean=False)
    assert sub.connack.session_present
    again = [sub.expect(PUBLISH) for _ in range(2)]
    assert [(p.pid, p.dup, p.payload) for p in again] == \
        [(got[2].pid, True, b"m2"), (got[3].pid, True, b"m3")]
    for p in again:
        sub.send(ack(PUBACK, p.pid))
    sub.expect_nothing(0.5)
    leave(sub)
    b2.stop()


def test_restart_will_and_expiry_keep_counting_MQTT_3_1_2_23(tmp_path):
    """Session expiry and message expiry are wall-clock deadlines in the store: a session
    whose expiry interval ran out while the broker was down is gone after the restart
    (MQTT-3.1.2-23), as is an expired queued message (MQTT-3.3.2-5); a session with time
    left keeps its queue."""
    store = tmp_path / "store"
    store.mkdir()
    b = start(tmp_path, store)
    short, _ = v5_client(b, "short", properties=[("session_expiry", 1)])
    short.send(subscribe(1, [("x/#", 1)], version=5))
    short.expect(SUBACK)
    leave(short)
    longer, _ = v5_client(b, "long", properties=[("session_expiry", 3600)])
    longer.send(subscribe(1, [("x/#", 1)], version=5))
    longer.expect(SUBACK)
    leave(longer)
    with v5_client(b, "pub")[0] as pub:
        pub.send(publish("x/1", b"dies", qos=1, pid=1, version=5,
                         properties=[("message_expiry", 1)]))
        pub.expect(PUBACK)
        pub.send(publish("x/1", b"lives", qos=1, pid=2, version=5))
        pub.expect(PUBACK)
    b.stop()
    time.sleep(1.2)  # the point of the test: time passes while the broker is down

    b2 = start(tmp_path, store)
    line = b2.wait_log(r"Persistence: restored")
    assert "restored 1 session" in line and "purged 1 expired session and 1 expired" in line, line
    c, connack = v5_client(b2, "long", clean=False, properties=[("session_expiry", 3600)])
    assert connack.session_present
    assert recv_publish(c).payload == b"lives"
    c.expect_nothing(0.3)
    c2, connack2 = v5_client(b2, "short", clean=False, properties=[("session_expiry", 1)])
    assert not connack2.session_present
    leave(c)
    leave(c2)
    b2.stop()


def test_persistence_off_writes_nothing(tmp_path, broker_factory):
    """persistence false (the default): no store file is created."""
    b = broker_factory(f"persistence_location {tmp_path}/\n")
    with connected_client(b, "x", clean=False) as c:
        subscribe_ok(c, 1, [("a", 1)])
    b.stop()
    assert not (tmp_path / "mosquitto.db").exists()


def test_restart_pending_delayed_will_is_published_once_MQTT_3_1_3_9(tmp_path):
    """A will waiting for its Will Delay Interval when the broker stops is still published
    after the restart, when due (MQTT-3.1.3-9); a will published before the stop is not
    published again. A persistent watcher sees each exactly once."""
    store = tmp_path / "store"
    store.mkdir()
    b = start(tmp_path, store)
    w = connected_client(b, "watch", clean=False)
    subscribe_ok(w, 1, [("w/#", 1)])
    leave(w)
    will = dict(topic="w/late", payload=b"gone", qos=1, properties=[("will_delay", 1)])
    c, _ = v5_client(b, "willer", clean=True, properties=[("session_expiry", 3600)],
                     will=will)
    c.close()  # abnormal: the will waits 1 s
    b.wait_log(r"Client willer .*disconnected")
    c2 = connected_client(b, "early", clean=False, will=dict(topic="w/early", payload=b"now",
                                                             qos=1))
    c2.close()  # no delay: published at once, before the stop
    b.wait_log(r"Publishing will of client early")
    b.stop()

    b2 = start(tmp_path, store)
    b2.wait_log(r"Publishing will of client willer", timeout=10)
    w = connected_client(b2, "watch", clean=False)
    got = [(p.topic, p.payload) for p in (recv_publish(w), recv_publish(w))]
    assert got == [("w/early", b"now"), ("w/late", b"gone")]
    w.expect_nothing(0.5)
    leave(w)
    b2.stop()


def test_daemonized_broker_persists(tmp_path):
    """hato -d opens the store before it forks (to refuse a bad one on the terminal) and
    again in the daemon, as LMDB requires; state written by the daemon is there after."""
    import os
    import signal
    import subprocess
    from conftest import HATO_BIN, free_port
    from persistkit import store_config
    store = tmp_path / "store"
    store.mkdir()
    port = free_port()
    pid_file = tmp_path / "hato.pid"
    conf = tmp_path / "daemon.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npid_file {pid_file}\n"
                    + store_config(store))
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    assert subprocess.run([HATO_BIN, "-d", "-c", str(conf)], env=env, timeout=30).returncode == 0
    deadline = time.monotonic() + 15
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline, "no pid file"
        time.sleep(0.02)
    pid = int(pid_file.read_text())
    try:
        c = None
        while c is None:
            try:
                c = connected_client(port, "daemon-sub", clean=False)
            except ConnectionRefusedError:
                assert time.monotonic() < deadline
                time.sleep(0.02)
        subscribe_ok(c, 1, [("dm/#", 1)])
        leave(c)
        with connected_client(port, "p") as p:
            publish_ok(p, "dm/1", b"kept", qos=1, pid=1)
    finally:
        os.kill(pid, signal.SIGTERM)
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline + 15, "daemon did not stop"
            time.sleep(0.02)
    b = start(tmp_path, store)
    c = connected_client(b, "daemon-sub", clean=False)
    assert recv_publish(c).payload == b"kept"
    leave(c)
    b.stop()


def test_restart_keeps_the_acl_identity_of_offline_sessions(tmp_path):
    """ACLs and persistence together: a persistent session restored from the store still
    has its user name, so messages published while its client is away (after the restart)
    are checked against that user's read rules, not the anonymous ones, and queued."""
    store = tmp_path / "store"
    store.mkdir()
    acl = tmp_path / "acl"
    acl.write_text("user bob\ntopic read t/#\n\nuser pub\ntopic write t/#\n")
    pw = tmp_path / "passwd"
    pw.write_text("bob:bob\npub:pub\n")  # plain text is read as such by hato-passwd -U only
    from authutil import hato_passwd
    hato_passwd("-U", pw)
    extra = f"allow_anonymous false\npassword_file {pw}\nacl_file {acl}\n"
    b = start(tmp_path, store, extra=extra, anonymous=False)
    c = connected_client(b, "bob-sub", clean=False, username="bob", password=b"bob")
    subscribe_ok(c, 1, [("t/#", 1)])
    leave(c)
    b.stop()

    b2 = start(tmp_path, store, extra=extra, anonymous=False)
    with connected_client(b2, "pub", username="pub", password=b"pub") as pub:
        publish_ok(pub, "t/1", b"while away", qos=1, pid=1)
        leave(pub)
    c = connected_client(b2, "bob-sub", clean=False, username="bob", password=b"bob")
    assert c.connack.session_present
    p = recv_publish(c)
    assert (p.topic, p.payload) == ("t/1", b"while away")
    leave(c)
    b2.stop()
