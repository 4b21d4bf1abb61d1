"""Shared pytest fixtures: start the real broker on an ephemeral loopback port.

HATO_BIN names the broker binary (default: build/hato). Setting
HATO_TEST_BROKER=mosquitto runs the same tests against Debian's mosquitto,
which is how a test's expectations are checked against the reference broker.
Readiness is awaited on the broker's own "version ... running" log line,
never by sleeping.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HATO_BIN = os.environ.get("HATO_BIN", os.path.join(ROOT, "build", "hato"))
REFERENCE = os.environ.get("HATO_TEST_BROKER", "hato")
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer")


def free_port():
    """An ephemeral port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoggedProcess:
    """A process we started, its output (stdout and stderr) collected line by line."""

    def __init__(self, cmd, env=None):
        self.lines = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=env)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.lines.append(None)  # end of output
            self.cond.notify_all()

    @property
    def log(self):
        with self.cond:
            return "\n".join(l for l in self.lines if l is not None)

    def wait_log(self, pattern, timeout=10, start=0):
        """Wait for a log line matching pattern (from line index start); return it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    line = self.lines[i]
                    i += 1
                    if line is None:
                        raise AssertionError(
                            f"process exited (rc={self.proc.poll()}) before /{pattern}/:\n{self.log}")
                    if rx.search(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no log line /{pattern}/ in {timeout}s:\n{self.log}")
                self.cond.wait(left)

    def mark(self):
        """Index of the next log line, for wait_log(start=...)."""
        with self.cond:
            return len(self.lines)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def terminate(self, timeout=20):
        """SIGTERM and wait (SIGKILL after timeout). Returns (returncode, stopped_in_time)."""
        in_time = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                in_time = False
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=10)
        return self.proc.returncode, in_time

    def stop(self):
        """Stop the process; return its exit status."""
        return self.terminate(timeout=10)[0]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=10)


# Brokers started as root stay root (the tests' 0700 directories and files
# re-read on SIGHUP belong to root); see docs/security.md. Tests that rewrite
# a broker's config put this line back.
RUN_AS = "user root\n" if os.geteuid() == 0 else ""


class Broker(LoggedProcess):
    """A broker process we started on a free loopback port."""

    def __init__(self, tmp_path, config="", port=None, args=(), listener=True,
                 anonymous=True, env=None):
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.tmp_path = tmp_path
        text = ""
        if listener:
            text += f"listener {self.port} 127.0.0.1\n"
        if anonymous:
            text += "allow_anonymous true\n"
        text += RUN_AS
        if REFERENCE == "mosquitto":
            text += "log_dest stderr\nlog_type all\n"
        text += config
        self.config_path = os.path.join(str(tmp_path), f"broker-{self.port}.conf")
        with open(self.config_path, "w") as f:
            f.write(text)
        if REFERENCE == "mosquitto":
            cmd = ["/usr/sbin/mosquitto", "-c", self.config_path]
        else:
            cmd = [HATO_BIN, "-c", self.config_path]
        cmd += list(args)
        full_env = dict(os.environ)
        full_env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        full_env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        if env:
            full_env.update(env)
        super().__init__(cmd, full_env)
        self.wait_log(r"version \S+ running", timeout=15)

    def stop(self, check=True):
        """SIGTERM, wait for exit, check exit status and sanitizer output."""
        _, in_time = self.terminate()
        if check and not in_time:
            raise AssertionError("broker did not stop on SIGTERM:\n" + self.log)
        if check:
            self.check_clean()

    def check_clean(self):
        log = self.log
        for mark in SANITIZER_MARKS:
            assert mark not in log, "sanitizer report in broker output:\n" + log
        rc = self.proc.returncode
        assert rc == 0, f"broker exit status {rc}:\n{log}"


@pytest.fixture
def broker_factory(tmp_path):
    """start(config="", **kw) -> Broker; all are stopped (and checked) at teardown."""
    started = []

    def start(config="", **kw):
        b = Broker(tmp_path, config, **kw)
        started.append(b)
        return b

    yield start
    errors = []
    for b in started:
        try:
            b.stop()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture
def broker(broker_factory):
    """A broker with default settings and an anonymous loopback listener."""
    return broker_factory()


def pytest_report_header(config):
    return f"broker under test: {REFERENCE} ({HATO_BIN if REFERENCE == 'hato' else '/usr/sbin/mosquitto'})"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "hato_only(reason): behaviour hato has on purpose where mosquitto 2.0 differs; "
        "skipped when HATO_TEST_BROKER=mosquitto")


def pytest_collection_modifyitems(config, items):
    if REFERENCE != "mosquitto":
        return
    for item in items:
        mark = item.get_closest_marker("hato_only")
        if mark:
            item.add_marker(pytest.mark.skip(reason="hato only: " + (mark.args[0] if mark.args else "")))
