"""SIGHUP re-reads the whole configuration (issue 13): listeners added and
removed without dropping clients, limits applied live, a bad file keeps the
running configuration, directives that cannot change live are logged as
needing a restart. Password and ACL reloads are in test_auth_reload.py, TLS
ones in test_tls.py."""

import os
import signal
import socket

import pytest

from conftest import RUN_AS, free_port
from mqttraw import (PINGRESP, PUBACK, PUBLISH, connected_client, pingreq, publish,
                     recv_publish, subscribe_ok, unix_client, v5_client)

pytestmark = pytest.mark.hato_only("Mosquitto 2.0 reloads only some settings on SIGHUP "
                                   "and never opens or closes listeners")


def rewrite(b, text):
    """Replace the broker's config file: its first listener stays, then text."""
    with open(b.config_path, "w") as f:
        f.write(f"listener {b.port} 127.0.0.1\nallow_anonymous true\n" + RUN_AS + text)


def reload(b, text, ok=True):
    """Rewrite the config, SIGHUP, wait for the reload's outcome line; return the log
    lines the reload wrote."""
    rewrite(b, text)
    mark = b.mark()
    b.signal(signal.SIGHUP)
    line = b.wait_log(r"Reloaded config: |reload failed", start=mark)
    assert ("Reloaded config: " in line) == ok, line
    return b.log.split("\n")[mark:]


def refused(port):
    """True when nothing listens on 127.0.0.1:port any more."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def roundtrip(sub, pub, topic):
    """pub publishes on topic; sub (subscribed to it) receives it."""
    pub.send(publish(topic, b"hello"))
    got = recv_publish(sub)
    assert got.topic == topic and got.payload == b"hello", got


def test_added_listener_accepts_and_clients_stay(broker_factory):
    b = broker_factory()
    new_port = free_port()
    with connected_client(b, "stays") as old:
        subscribe_ok(old, 1, [("r/#", 0)])
        lines = reload(b, f"listener {new_port} 127.0.0.1\n")
        assert any(f"Opening ipv4 listen socket on port {new_port}." in l for l in lines), lines
        with connected_client(new_port, "newcomer") as new:
            roundtrip(old, new, "r/added")
        # The listener that stayed still accepts.
        with connected_client(b, "again") as again:
            roundtrip(old, again, "r/kept")
        old.send(pingreq())
        assert old.expect(PINGRESP)


def test_removed_listener_refuses_new_connections_keeps_its_client(broker_factory):
    extra = free_port()
    b = broker_factory(f"listener {extra} 127.0.0.1\n")
    with connected_client(extra, "on-removed") as kept, connected_client(b, "pub") as pub:
        subscribe_ok(kept, 1, [("gone/#", 0)])
        lines = reload(b, "")
        assert any(f"Closed listen socket on port {extra}." in l for l in lines), lines
        assert refused(extra)
        # The client of the removed listener is still served, both ways.
        roundtrip(kept, pub, "gone/1")
        kept.send(pingreq())
        assert kept.expect(PINGRESP)
        with connected_client(b, "sub2") as sub2:
            subscribe_ok(sub2, 1, [("back/#", 0)])
            roundtrip(sub2, kept, "back/1")
    # A new listener on the same port comes back on a later reload.
    reload(b, f"listener {extra} 127.0.0.1\n")
    with connected_client(extra, "returned"):
        pass


def test_bad_config_keeps_running_config_and_logs_file_line(broker_factory):
    b = broker_factory("message_size_limit 0\n")
    extra = free_port()
    lines = reload(b, f"listener {extra} 127.0.0.1\nmessage_size_limit 10\nno_such_directive 1\n",
                   ok=False)
    line = 5 + RUN_AS.count("\n")  # after the two header lines, the user line, two more
    want = f"{b.config_path}:{line}: unknown directive 'no_such_directive'"
    assert any(want in l and "keeping the running configuration" in l for l in lines), lines
    assert refused(extra)  # nothing of the bad file applied: no listener ...
    c, _ = v5_client(b, "big")
    c.send(publish("t", b"x" * 100, qos=1, pid=1, version=5))
    assert c.expect(PUBACK).reason < 0x80  # ... and no new limit (0x10: no subscribers)
    c.close()


def test_port_in_use_fails_reload_before_anything_applies(broker_factory):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        b = broker_factory()
        lines = reload(b, f"listener {port} 127.0.0.1\nmax_connections 0\n", ok=False)
        assert any(f"listener {port} cannot be opened" in l for l in lines), lines
        with connected_client(b, "still-accepted"):  # max_connections 0 not applied
            pass
    finally:
        busy.close()


def test_restart_only_directives_logged_and_kept(broker_factory, tmp_path):
    b = broker_factory("threads 2\n")
    lines = reload(b, f"threads 3\npersistence_location {tmp_path}/\nuser nobody-else\n"
                      f"pid_file {tmp_path}/x.pid\n")
    for name in ("threads", "persistence_location", "user", "pid_file"):
        assert any(f"Warning: {name} changed: needs a restart" in l for l in lines), (name, lines)
    assert not os.path.exists(tmp_path / "x.pid")
    with connected_client(b, "fine"):
        pass


def test_max_connections_applied_live(broker_factory):
    b = broker_factory()
    reload(b, "max_connections 1\n")
    with connected_client(b, "first"):
        mark = b.mark()
        s = socket.create_connection(("127.0.0.1", b.port), timeout=5)
        b.wait_log(r"Refused connection from .*max_connections \(1\) reached", start=mark)
        s.settimeout(5)
        assert s.recv(1) == b""  # closed at once
        s.close()
    reload(b, "max_connections 5\n")
    with connected_client(b, "a"), connected_client(b, "b"):
        pass


def test_message_size_limit_applied_to_open_connection(broker_factory):
    b = broker_factory()
    c, _ = v5_client(b, "sizer")
    c.send(publish("t", b"x" * 100, qos=1, pid=1, version=5))
    assert c.expect(PUBACK).reason < 0x80
    reload(b, "message_size_limit 10\n")
    c.send(publish("t", b"x" * 100, qos=1, pid=2, version=5))
    a = c.expect(PUBACK)
    assert a.pid == 2 and a.reason == 0x97, a  # quota exceeded: the new limit
    c.send(publish("t", b"x" * 10, qos=1, pid=3, version=5))
    assert c.expect(PUBACK).reason < 0x80
    c.close()


def test_sys_interval_changes_live(broker_factory):
    b = broker_factory("sys_interval 10\n")
    lines = reload(b, "sys_interval 1\n")
    assert not any("needs a restart" in l for l in lines), lines


def test_listener_settings_change_on_kept_listener(broker_factory):
    """The same listener (port, address, protocol) keeps its socket and takes its new
    settings: max_qos given on reload is what the next MQTT 5 CONNACK announces."""
    b = broker_factory()
    before, ack = v5_client(b, "before")
    assert "maximum_qos" not in ack.props, ack.props  # 2: not sent
    lines = reload(b, "max_qos 1\n")
    assert not any("Opening" in l or "Closed" in l for l in lines), lines
    after, ack = v5_client(b, "after")
    assert ack.props.get("maximum_qos") == 1, ack.props
    before.send(pingreq())
    assert before.expect(PINGRESP)
    before.close()
    after.close()


def test_open_connection_keeps_the_listener_settings_it_connected_with(broker_factory):
    """A mount point given on reload applies to new connections; a client connected
    before keeps its topics unmounted (its subscriptions were made that way)."""
    b = broker_factory()
    with connected_client(b, "before") as before:
        subscribe_ok(before, 1, [("#", 0)])
        reload(b, "mount_point m/\n")
        with connected_client(b, "after") as after:
            after.send(publish("t", b"hello"))
            got = recv_publish(before)
            assert got.topic == "m/t", got  # mounted by after's listener, not stripped


def test_protocol_change_on_same_port(broker_factory):
    """mqtt -> websockets on the same port is a new listener: the old socket closes
    first, then the new one opens on that port; the old client stays."""
    extra = free_port()
    b = broker_factory(f"listener {extra} 127.0.0.1\n")
    with connected_client(extra, "plain") as plain:
        lines = reload(b, f"listener {extra} 127.0.0.1\nprotocol websockets\n")
        assert any(f"Closed listen socket on port {extra}." in l for l in lines), lines
        s = socket.create_connection(("127.0.0.1", extra), timeout=5)
        s.sendall(b"GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 4096:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        s.close()
        assert head.startswith(b"HTTP/1.1 101"), head
        plain.send(pingreq())
        assert plain.expect(PINGRESP)


def test_unix_listener_added_and_removed(broker_factory, tmp_path):
    path = str(tmp_path / "hato.sock")
    b = broker_factory()
    reload(b, f"listener 0 {path}\n")
    with unix_client(path) as u:
        u.connect("unix-client")
        reload(b, "")
        assert not os.path.exists(path)
        u.send(pingreq())
        assert u.expect(PINGRESP)


def test_reloads_while_clients_connect(broker_factory):
    """Twenty reloads that add and remove a listener while clients keep connecting to
    it and publishing: every reload completes, the long-lived client is never dropped,
    and the broker exits clean (sanitizer builds check the teardown)."""
    extra = free_port()
    b = broker_factory()
    with connected_client(b, "watcher") as watcher:
        subscribe_ok(watcher, 1, [("storm/#", 0)])
        for i in range(20):
            with_extra = i % 2 == 0
            reload(b, f"listener {extra} 127.0.0.1\n" if with_extra else "")
            port = extra if with_extra else b.port
            with connected_client(port, f"c{i}") as c:
                roundtrip(watcher, c, f"storm/{i}")
        watcher.send(pingreq())
        assert watcher.expect(PINGRESP)
