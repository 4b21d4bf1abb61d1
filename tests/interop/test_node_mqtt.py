"""Interop with the `mqtt` npm package (MQTT.js, pinned in
tests/interop/node/package.json), protocolVersion 4 (3.1.1) and 5: connect,
subscribe, publish QoS 0/1/2, MQTT 5 properties, retained messages and
clearing them, unsubscribe.

The Node side (tests/interop/node/interop.js) prints a JSON report that is
checked here. Install its dependencies with `npm ci --prefix tests/interop/node`;
without them (or without node) the tests are skipped.
"""

import json
import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")
NODE = shutil.which("node")
HAVE_MQTT = os.path.isfile(os.path.join(NODE_DIR, "node_modules", "mqtt", "package.json"))

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node (Node.js) is not installed"),
    pytest.mark.skipif(not HAVE_MQTT, reason="tests/interop/node/node_modules is missing: "
                                             "run `npm ci --prefix tests/interop/node`"),
]


def run_node(broker, version):
    r = subprocess.run([NODE, os.path.join(NODE_DIR, "interop.js"), broker.host,
                        str(broker.port), str(version)],
                       cwd=NODE_DIR, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    out = r.stdout.decode().strip().splitlines()
    assert out, f"no output from node (rc={r.returncode}): {r.stderr.decode()}"
    report = json.loads(out[-1])
    assert r.returncode == 0 and report.get("ok"), f"node run failed: {report}"
    return report


def pinned_version():
    with open(os.path.join(NODE_DIR, "package.json")) as f:
        return json.load(f)["dependencies"]["mqtt"]


@pytest.mark.parametrize("version", [4, 5])
def test_node_mqtt_pubsub_qos_retained(broker, version):
    rep = run_node(broker, version)
    assert rep["mqttjs"] == pinned_version()
    assert rep["granted"] == [2]
    msgs = rep["messages"]
    assert [(m["topic"], m["payload"], m["qos"], m["retain"]) for m in msgs] == [
        ("BASE/data", f"payload-{q}", q, False) for q in (0, 1, 2)]
    if version == 5:
        for q, m in zip((0, 1, 2), msgs):
            assert m["userProperties"] == {"origin": "node", "qos": str(q)}
            assert m["contentType"] == "text/plain"
            assert m["responseTopic"] == "BASE/reply"
            assert m["correlationData"] == [1, 2, q]
            sid = m["subscriptionIdentifier"]
            assert sid == 12 or sid == [12], sid
    else:
        assert all(not m["userProperties"] for m in msgs)
    assert rep["retained"] == {"payload": "kept", "retain": True, "qos": 1}
    assert rep["retainedCleared"] is True
    assert rep["unsubscribe"] == "ok"
