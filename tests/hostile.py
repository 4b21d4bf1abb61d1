"""Helpers for the hostile-client tests (tests/integration/test_hostile_*.py) and bench/soak.

Nothing here sleeps to wait for an event: reads are bounded by timeouts,
loops by counts.
"""

import re
import signal
import socket
import time


def rss_kib(pid):
    """Resident set size of a process in KiB, from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def stats(broker):
    """Ask the broker for its counters (SIGUSR1) and return them as a dict."""
    mark = broker.mark()
    broker.signal(signal.SIGUSR1)
    line = broker.wait_log(r"Stats: ", start=mark)
    m = re.search(r"(\d+) clients, (\d+) messages in, (\d+) out, (\d+) dropped", line)
    keys = ("clients", "in", "out", "dropped")
    return dict(zip(keys, (int(x) for x in m.groups())))


def small_rcvbuf_socket(host, port, size=4096, timeout=5.0):
    """A TCP socket whose receive buffer is small, so a client that stops
    reading pushes back on the broker quickly."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    s.settimeout(timeout)
    s.connect((host, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def wait_closed(sock, timeout):
    """True if the peer closes sock within timeout (data before is discarded)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        if not data:
            return True


ASAN_SMALL_QUARANTINE = {
    # Freed memory held by ASan would look like growth: keep its quarantine small
    # so RSS measures what the broker keeps.
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:quarantine_size_mb=4:"
                    "thread_local_quarantine_size_kb=64:malloc_context_size=5",
}


def wait_count(proc, text, n, timeout=10):
    """Wait until `text` appears in at least n log lines of proc (a LoggedProcess)."""
    deadline = time.monotonic() + timeout
    with proc.cond:
        while True:
            count = sum(1 for l in proc.lines if l is not None and text in l)
            if count >= n:
                return count
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{count} < {n} log lines with {text!r}:\n{proc.log}")
            proc.cond.wait(left)
