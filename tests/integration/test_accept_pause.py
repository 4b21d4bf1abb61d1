"""Out of descriptors: a worker stops accepting (level-triggered epoll would
spin), logs it, and accepts again at its next tick once descriptors are free.
The listening sockets it pauses and resumes are the worker's own view of the
listener set (reload.c keeps it in step with reloads)."""

import os
import select
import time

import pytest

from conftest import HATO_BIN, LoggedProcess, free_port
from mqttraw import CONNACK, RawClient, connect

pytestmark = pytest.mark.hato_only("log lines; Mosquitto handles EMFILE its own way")


def connacked(clients, timeout):
    """The clients that received a CONNACK within timeout (polled with select)."""
    got = set()
    deadline = time.monotonic() + timeout
    while len(got) < len(clients):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        socks = [c.sock for c in clients if c not in got]
        ready, _, _ = select.select(socks, [], [], min(left, 0.5))
        if not ready:
            if got:
                break  # quiet for half a second after the last one: all there are
            continue
        for c in clients:
            if c.sock in ready:
                p = c.recv(1)
                assert p.type == CONNACK, p
                got.add(c)
    return got


def test_accept_resumes_after_descriptors_are_freed(tmp_path):
    port = free_port()
    conf = tmp_path / "hato.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nthreads 1\n")
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    b = LoggedProcess(["prlimit", "--nofile=40:40", HATO_BIN, "-c", str(conf)], env=env)
    clients = []
    try:
        b.wait_log(r"version \S+ running", timeout=15)
        mark = b.mark()
        for i in range(60):  # more than 40 descriptors can hold
            c = RawClient(port)
            c.send(connect(f"fd{i}"))
            clients.append(c)
        b.wait_log(r"Cannot accept: Too many open files; pausing new connections\.", start=mark)
        served = connacked(clients, 10)
        waiting = [c for c in clients if c not in served]
        assert served and waiting, (len(served), len(waiting))
        for c in list(served)[:10]:
            c.close()
        # The next tick resumes accepting: clients from the backlog are served.
        assert connacked(waiting, 10), "no waiting client was accepted after fds were freed"
    finally:
        for c in clients:
            c.close()
        rc, in_time = b.terminate()
    assert in_time and rc == 0, b.log
    for mark in ("ERROR: AddressSanitizer", "runtime error:"):
        assert mark not in b.log, b.log
