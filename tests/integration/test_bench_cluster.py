"""bench/cluster --quick (issue 17's benchmark) runs to the end on loopback:
three nats-servers, up to three hato nodes per run and Debian's mosquitto,
all started and stopped by the script. So CI keeps it working; the
figures themselves are for docs/benchmarks.md, not asserted here, except
what must hold at any speed: every variant delivered, nothing lost where
nothing may be, and the model's counts (one NATS subscription per filter,
one JetStream consumer per persistent QoS 1 subscription, four streams)."""

import glob
import json
import os
import shutil
import subprocess

import pytest

from conftest import HATO_BIN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "bench", "cluster")
NATS = shutil.which("nats-server") or "/usr/sbin/nats-server"

pytestmark = [
    pytest.mark.hato_only("runs hato nodes and mosquitto itself"),
    pytest.mark.skipif(not os.access(NATS, os.X_OK), reason="nats-server not installed"),
]


@pytest.mark.timeout(240)
def test_quick_cluster_benchmark_runs_and_counts(tmp_path):
    out = tmp_path / "results"
    env = dict(os.environ, TMPDIR=str(tmp_path))
    r = subprocess.run([SCRIPT, "--quick", "--no-build", "--bin-dir",
                        os.path.dirname(os.path.abspath(HATO_BIN)), "--results", str(out)],
                       capture_output=True, text=True, timeout=220, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    # Its temporary directory (nats stores, configs, logs) is gone.
    assert not glob.glob(str(tmp_path / "hato-cluster-bench-*"))
    [path] = glob.glob(str(out / "cluster-*.json"))
    with open(path) as f:
        res = json.load(f)
    med = {(m["part"], m["variant"]): m for m in res["medians"]}
    expected = {("p1", v) for v in ("alone", "same", "cross", "mosquitto")} | \
        {("p2", v) for v in ("alone", "durable", "clean", "mosquitto")} | \
        {("p3", v) for v in ("local1", "local2", "local3", "all2", "all3")}
    assert set(med) == expected
    for key, m in med.items():
        assert m["errors"] == 0, key
        assert m["recv_rate"] > 0 and m["cpu_us_per_msg"] > 0, key
        assert m["interest_ok"], key
    for run in res["runs"]:
        for s in run["results"]:
            # The brokers' logs (read after they stopped): no sanitizer report.
            bad = [n for n in s["log_notes"] if "Sanitizer" in n or "runtime error" in n]
            assert not bad, bad
            assert s["received"] > 0 and s["expected"] > 0
            if run["variant"] in ("alone", "mosquitto", "durable"):
                # One broker, or JetStream-backed sessions: QoS 0 on loopback
                # and QoS 1 lose nothing, arrive once and in order.
                assert (s["lost"], s["duplicates"], s["reordered"]) == (0, 0, 0), run["variant"]
    # Cross-node runs really went through NATS: the servers worked.
    for v in ("cross", "durable", "clean"):
        assert med[("p1" if v == "cross" else "p2", v)]["nats_cpu_us_per_msg"] > 0
    model = res["model"]
    for label in ("clean_qos0", "persistent_qos1"):
        x = model[label]
        assert not [n for n in x["log_notes"] if "Sanitizer" in n or "runtime error" in n]
        f = x["filters"]
        assert x["bench"]["lost"] == 0 and x["bench"]["received"] == 10
        n2 = [c for nm, c in x["nats_subscriptions_per_connection"].items()
              if nm.endswith("/n2")]
        # One NATS subscription per distinct filter (plus, when persistent,
        # one per durable consumer's deliveries), and a few of the node's own.
        assert n2 and n2[0] >= (2 * f if label == "persistent_qos1" else f)
        assert len(x["streams_of_cluster"]) == 4
    durable = model["persistent_qos1"]
    assert durable["consumers_of_msgs_stream"] == durable["filters"]
    assert model["clean_qos0"]["consumers_of_msgs_stream"] == 0
    assert "QoS 0 cross-node / same-node" in r.stdout and "model persistent_qos1" in r.stdout
