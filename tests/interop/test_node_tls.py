"""Interop over TLS with the `mqtt` npm package (MQTT.js, Node's own TLS stack): mqtts:// with
the server certificate verified against the test CA, then with a client certificate used as the
user name. Skipped without node or tests/interop/node/node_modules (`npm ci --prefix
tests/interop/node`)."""

import json
import os
import shutil
import subprocess

import pytest

from tlspki import pki  # noqa: F401 (fixture)

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")
NODE = shutil.which("node")
HAVE_MQTT = os.path.isfile(os.path.join(NODE_DIR, "node_modules", "mqtt", "package.json"))

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node (Node.js) is not installed"),
    pytest.mark.skipif(not HAVE_MQTT, reason="tests/interop/node/node_modules is missing: "
                                             "run `npm ci --prefix tests/interop/node`"),
    pytest.mark.hato_only("reads hato's log"),
]


def run_tls(port, *files):
    r = subprocess.run([NODE, os.path.join(NODE_DIR, "tls.js"), str(port), *files],
                       cwd=NODE_DIR, stdin=subprocess.DEVNULL, capture_output=True, timeout=40)
    out = r.stdout.decode().strip().splitlines()
    assert out, f"no output from node (rc={r.returncode}): {r.stderr.decode()}"
    report = json.loads(out[-1])
    assert r.returncode == 0 and report.get("ok"), f"node run failed: {report}"
    return report


def test_node_mqtts_server_certificate(broker_factory, pki):
    b = broker_factory(f"cafile {pki['ca.crt']}\ncertfile {pki['server.crt']}\n"
                       f"keyfile {pki['server.key']}\n")
    rep = run_tls(b.port, pki["ca.crt"])
    assert rep["protocol"] in ("TLSv1.2", "TLSv1.3")
    assert rep["small"] == "small" and rep["bigSame"] and rep["bigLength"] == 2 * 1024 * 1024


def test_node_mqtts_client_certificate_as_username(broker_factory, pki):
    b = broker_factory(f"cafile {pki['ca.crt']}\ncertfile {pki['server.crt']}\n"
                       f"keyfile {pki['server.key']}\nrequire_certificate true\n"
                       "use_identity_as_username true\n", anonymous=False)
    run_tls(b.port, pki["ca.crt"], pki["client.crt"], pki["client.key"])
    b.wait_log(r"as node-tls-\d+ \(p5, .*u'client1'\)")
