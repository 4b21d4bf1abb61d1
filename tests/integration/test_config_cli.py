"""Broker configuration file and command line behaviour.

Tests that run the broker binary directly (--test-config, -h, -p) target hato and are hato_only.
Tests that only need config directives mosquitto also has go through the broker fixtures and
run against both.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import HATO_BIN, LoggedProcess, free_port
from mqttraw import (CONNACK, PINGRESP, RawClient, connect, connected_client, pingreq, publish,
                     recv_publish, subscribe_ok, unix_client)

HATO = "hato binary command line"


def run_hato(*args, timeout=10):
    return subprocess.run([HATO_BIN, *args], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


# --- the hato binary itself -----------------------------------------------------------------

@pytest.mark.hato_only(HATO)
def test_test_config_good_exits_0(tmp_path):
    """--test-config -c FILE on a valid file exits 0 without starting a broker."""
    conf = write(tmp_path / "good.conf", f"listener {free_port()} 127.0.0.1\nallow_anonymous true\n"
                 "max_queued_messages 100\n# a comment\n\nmax_keepalive 120\n")
    r = run_hato("--test-config", "-c", conf)
    assert r.returncode == 0, r


@pytest.mark.hato_only(HATO)
@pytest.mark.parametrize("test_config", [True, False], ids=["test-config", "start"])
def test_unknown_directive_reports_file_line(tmp_path, test_config):
    """An unknown directive is an error: non-zero exit, message with FILE:LINE: and the name."""
    conf = write(tmp_path / "bad.conf", f"listener {free_port()} 127.0.0.1\n"
                 "allow_anonymous true\nbogus_directive_xyz 5\n")
    args = ["--test-config", "-c", conf] if test_config else ["-c", conf]
    r = run_hato(*args)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert r.returncode != 0, out
    assert re.search(re.escape("bad.conf") + r":3:", out), out
    assert "bogus_directive_xyz" in out, out


@pytest.mark.hato_only(HATO)
def test_bad_value_reports_file_line(tmp_path):
    """A known directive with an invalid value is an error with FILE:LINE:."""
    conf = write(tmp_path / "val.conf", "max_queued_messages lots\n")
    r = run_hato("--test-config", "-c", conf)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert r.returncode != 0, out
    assert re.search(r"val\.conf:1:", out), out


@pytest.mark.hato_only(HATO)
def test_help_prints_usage_exits_0():
    """-h prints usage and exits 0."""
    r = run_hato("-h")
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    assert r.returncode == 0, out
    assert re.search(r"usage", out, re.I), out
    assert "-c" in out and "-p" in out, out


@pytest.mark.hato_only(HATO)
def test_port_option_without_config_is_local_only():
    """-p PORT with no config: listens on loopback on that port, logs that it is local only."""
    port = free_port()
    p = LoggedProcess([HATO_BIN, "-p", str(port)])
    try:
        p.wait_log(r"version \S+ running")
        assert re.search(r"local.only", p.log, re.I), p.log
        with connected_client(port, "local") as c:
            c.send(pingreq())
            c.expect(PINGRESP)
    finally:
        assert p.stop() == 0, p.log


# --- config directives (run against both brokers) ----------------------------------------------

def test_sigterm_exit_status_0_and_logs_stop(broker):
    """SIGTERM: the broker exits with status 0 and logs that it is stopping."""
    with connected_client(broker, "present"):
        broker.signal(signal.SIGTERM)
        broker.proc.wait(timeout=10)
    broker.reader.join(timeout=5)
    assert broker.proc.returncode == 0, broker.log
    assert re.search(r"terminat|stop", broker.log.splitlines()[-1], re.I), broker.log


def test_max_connections(broker_factory):
    """max_connections 2 on the listener: a third simultaneous connection is refused or closed
    without CONNACK; after one leaves, a new one is accepted."""
    b = broker_factory("max_connections 2\n")
    c1 = connected_client(b, "one")
    c2 = connected_client(b, "two")
    try:
        try:
            c3 = RawClient(b)
        except OSError:
            c3 = None
        if c3 is not None:
            with c3:
                try:
                    c3.send(connect("three"))
                except OSError:
                    pass
                else:
                    got = c3.expect_closed(3)
                    assert not any(p.type == CONNACK and p.reason == 0 for p in got), got
        c2.send(b"\xe0\x00")
        c2.expect_closed(3)
        c2.close()
        deadline = time.monotonic() + 3
        while True:  # the broker notices c2 leaving asynchronously; bounded retry
            try:
                c4 = connected_client(b, "four")
                break
            except (AssertionError, OSError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        c4.close()
    finally:
        c1.close()
        c2.close()


def test_include_dir(broker_factory, tmp_path):
    """include_dir DIR reads DIR/*.conf: a listener defined there accepts connections."""
    inc = tmp_path / "conf.d"
    inc.mkdir()
    port2 = free_port()
    write(inc / "extra.conf", f"listener {port2} 127.0.0.1\n")
    write(inc / "ignored.txt", "this is not a config line\n")
    b = broker_factory(f"include_dir {inc}\n")
    with connected_client(port2, "via-include") as c, connected_client(b, "main") as m:
        subscribe_ok(m, 1, [("inc/t", 0)])
        c.send(publish("inc/t", b"across listeners"))
        assert recv_publish(m).payload == b"across listeners"


@pytest.fixture
def open_dir():
    """A short directory under /tmp that any user can write: a broker started as root may drop
    privileges (mosquitto switches to its own user), and sun_path is limited to ~108 bytes."""
    d = tempfile.mkdtemp(prefix="hato", dir="/tmp")
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_pid_file_written_and_removed(broker_factory, open_dir):
    """pid_file: written with the broker's pid while running, removed at exit."""
    pid_path = os.path.join(open_dir, "hato.pid")
    b = broker_factory(f"pid_file {pid_path}\n")
    with open(pid_path) as f:
        assert int(f.read().strip()) == b.proc.pid
    # one round trip first: mosquitto 2.0.11 can lose a SIGTERM that arrives right after its
    # "running" line, before its main loop starts
    with connected_client(b, "before-stop") as c:
        c.send(pingreq())
        c.expect(PINGRESP)
    b.stop()
    assert not os.path.exists(pid_path)


def test_unix_socket_listener(broker_factory, open_dir):
    """listener 0 PATH: an MQTT listener on a Unix domain socket."""
    path = os.path.join(open_dir, "mqtt.sock")
    b = broker_factory(f"listener 0 {path}\n")
    with unix_client(path) as u, connected_client(b, "tcp") as t:
        u.send(connect("unixclient"))
        assert u.expect(CONNACK).reason == 0
        subscribe_ok(u, 1, [("ux/t", 1)])
        t.send(publish("ux/t", b"over unix", qos=1, pid=1))
        t.expect(4)
        assert recv_publish(u).payload == b"over unix"
    b.stop()


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
            s6.bind(("::1", 0))
            return s6.getsockname()[1]
    except OSError:
        return None


def test_ipv6_listener(broker_factory):
    """listener PORT ::1 accepts IPv6 connections."""
    port = ipv6_loopback()
    if port is None:
        pytest.skip("::1 not available")
    b = broker_factory(f"listener {port} ::1\n")
    with RawClient(port, host="::1") as c:
        assert c.sock.family == socket.AF_INET6
        c.send(connect("six"))
        assert c.expect(CONNACK).reason == 0
        c.send(pingreq())
        c.expect(PINGRESP)
    with connected_client(b, "four"):
        pass
