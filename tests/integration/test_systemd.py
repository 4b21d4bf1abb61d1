"""systemd notification (issue 13): the test plays systemd's part, binding the
AF_UNIX datagram socket named by NOTIFY_SOCKET and reading what hato sends:
READY=1 once the listeners accept, STATUS= lines, RELOADING=1 with
MONOTONIC_USEC then READY=1 around SIGHUP, WATCHDOG=1 pings when
WATCHDOG_USEC is set, STOPPING=1 on SIGTERM (sd_notify(3), systemd.service(5)).

Not tested here: that a wedged worker stops the watchdog pings. There is no
honest way to wedge one worker thread from outside (SIGSTOP stops the whole
process) and a debug-only hook in the broker is not wanted in release builds.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import HATO_BIN, REFERENCE
from mqttraw import connected_client

pytestmark = [
    pytest.mark.hato_only("Debian's mosquitto is not built with systemd notification"),
]


def built_with_systemd():
    if REFERENCE != "hato" or not shutil.which("ldd"):
        return False
    out = subprocess.run(["ldd", HATO_BIN], capture_output=True, text=True).stdout
    return "libsystemd" in out


if not built_with_systemd():
    pytestmark.append(pytest.mark.skip(reason="hato built without libsystemd (HATO_HAVE_SYSTEMD)"))


class Notify:
    """The notification socket systemd would listen on."""

    def __init__(self):
        # Short path: sun_path holds 108 bytes, pytest's tmp_path can be longer.
        self.dir = tempfile.mkdtemp(prefix="hato-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.got = []  # every datagram, as a dict of its KEY=VALUE lines, in order

    def close(self):
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def wait(self, key, value=None, timeout=10, since=0):
        """The first datagram (index >= since) with key (and value); (index, fields)."""
        deadline = time.monotonic() + timeout
        i = since
        while True:
            while i < len(self.got):
                fields = self.got[i]
                if key in fields and (value is None or fields[key] == value):
                    return i, fields
                i += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {key}={value} from hato in {timeout}s: {self.got}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            self.got.append(dict(l.split("=", 1) for l in data.decode().split("\n") if "=" in l))

    def mark(self):
        return len(self.got)


@pytest.fixture
def notify():
    n = Notify()
    yield n
    n.close()


@pytest.fixture
def notified(broker_factory, notify):
    """start(**env) -> Broker under our NOTIFY_SOCKET."""
    def start(env=None, config=""):
        full = {"NOTIFY_SOCKET": notify.path}
        full.update(env or {})
        full.pop("WATCHDOG_PID", None)
        return broker_factory(config, env=full)
    return start


def test_ready_once_listener_accepts_then_status(notified, notify):
    b = notified()
    i, _ = notify.wait("READY", "1")
    # READY=1 means clients can connect: the port accepts now.
    with connected_client(b, "after-ready"):
        pass
    _, st = notify.wait("STATUS", since=i)
    assert st["STATUS"].endswith("msgs/s") and "client" in st["STATUS"], st


def test_reload_sends_reloading_with_monotonic_usec_then_ready(notified, notify):
    b = notified()
    notify.wait("READY", "1")
    with connected_client(b, "counted"):
        mark = notify.mark()
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        b.signal(signal.SIGHUP)
        i, fields = notify.wait("RELOADING", "1", since=mark)
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        # sd_notify(3): MONOTONIC_USEC is CLOCK_MONOTONIC when the reload started.
        assert before <= int(fields["MONOTONIC_USEC"]) <= after, (before, fields, after)
        j, _ = notify.wait("READY", "1", since=i + 1)
        # The STATUS line after the reload counts the connected client.
        _, st = notify.wait("STATUS", since=j)
        assert st["STATUS"].startswith("1 client,"), st


def test_failed_reload_still_ends_with_ready(notified, notify):
    b = notified()
    notify.wait("READY", "1")
    with open(b.config_path) as f:
        bad_line = len(f.read().splitlines()) + 1
    with open(b.config_path, "a") as f:
        f.write("no_such_directive 1\n")
    mark = notify.mark()
    b.signal(signal.SIGHUP)
    i, _ = notify.wait("RELOADING", "1", since=mark)
    _, ready = notify.wait("READY", "1", since=i + 1)
    assert "failed" in ready.get("STATUS", ""), ready
    b.wait_log(rf"reload failed: .*:{bad_line}: unknown directive 'no_such_directive'")


def test_watchdog_pings_at_half_the_interval(notified, notify):
    notified(env={"WATCHDOG_USEC": "400000"})  # pings every 200 ms
    notify.wait("READY", "1")
    start = time.monotonic()
    i = 0
    for _ in range(5):
        i, _ = notify.wait("WATCHDOG", "1", since=i)
        i += 1
    took = time.monotonic() - start
    # Five pings at 200 ms take about a second; well under the 400 ms timeout each.
    assert took < 3, took


def test_stopping_on_sigterm(notified, notify):
    b = notified()
    notify.wait("READY", "1")
    mark = notify.mark()
    b.signal(signal.SIGTERM)
    notify.wait("STOPPING", "1", since=mark)
    b.proc.wait(timeout=20)
