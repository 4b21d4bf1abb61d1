"""Deliveries between worker threads (route.c): a delivery for a session on
another worker travels in a batch of up to 64 per item, appended to only
while it is the last thing queued for that worker, so nothing is lost,
duplicated or reordered (MQTT-4.6.0-5: ordered per topic and QoS for
subscriptions of one session) whichever worker each client lands on; and a
broker stopped with batches in flight frees them (ASan checks at stop).

With 12 clients over 2 workers (placed by a seeded hash of the client id)
most publisher-subscriber pairs are on different workers; the counts come
from hato-bench, which checks every message's publisher and sequence."""

import json
import os
import subprocess
import time

import pytest

from conftest import HATO_BIN

pytestmark = pytest.mark.hato_only("worker threads are hato's")

BENCH = os.path.join(os.path.dirname(os.path.abspath(HATO_BIN)), "hato-bench")


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_cross_worker_deliveries_all_once_in_order(broker_factory, qos):
    b = broker_factory("threads 2\nmax_queued_messages 200000\nmax_output_buffer 0\n")
    r = subprocess.run([BENCH, "run", "-p", str(b.port), "--pubs", "8", "--subs", "4",
                        "-t", "xw/%i", "-T", "xw/#", "-q", str(qos), "-n", "3000",
                        "--json", "--quiet", "-d", "60"], capture_output=True, text=True,
                       timeout=90)
    s = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.returncode == 0, r.stderr
    assert s["expected"] == 8 * 4 * 3000
    assert s["received"] == s["expected"]
    assert (s["lost"], s["duplicates"], s["reordered"], s["errors"]) == (0, 0, 0, 0)


def test_stop_with_batches_in_flight_is_clean(broker_factory):
    b = broker_factory("threads 2\nmax_queued_messages 1000000\nmax_output_buffer 0\n")
    tool = subprocess.Popen([BENCH, "run", "-p", str(b.port), "--pubs", "8", "--subs", "4",
                             "-t", "xw/%i", "-T", "xw/#", "-q", "1", "-n", "1000000",
                             "--idle", "1", "-d", "30"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # Progress lines come once a second: the first with messages received
        # means deliveries are crossing between the workers now.
        deadline = time.monotonic() + 20
        for line in tool.stderr:
            if "received" in line and " received 0 " not in line:
                break
            assert time.monotonic() < deadline, "no traffic within 20 s"
        b.stop()  # SIGTERM mid-flood; exit 0 and no sanitizer report
    finally:
        tool.kill()
        tool.wait()
