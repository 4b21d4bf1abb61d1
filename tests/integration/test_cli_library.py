"""The client library driven the way hato-bench drives it: many clients in
one thread, each polled through hc_fd/hc_want_write/hc_handle_events/hc_tick
(tests/unit/client/multi_clients.c), against hato. Every message must
arrive, in order per publisher, at each QoS, with 3.1.1 and 5 clients mixed.
"""

import subprocess

import pytest

from cliutil import check_sanitizers, tool


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_many_clients_one_thread(broker, qos):
    r = subprocess.run([tool("multi_clients"), broker.host, str(broker.port), "50", "200",
                        str(qos)], capture_output=True, timeout=60)
    check_sanitizers(r.stderr)
    assert r.returncode == 0, r.stderr.decode()
    assert b"received=10000" in r.stdout
