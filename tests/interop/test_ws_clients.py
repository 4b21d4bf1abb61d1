"""Third-party MQTT-over-WebSocket clients against hato: Node's `mqtt`
(MQTT.js) and paho-mqtt for Python over ws and wss, hato's own hato-pub and
hato-sub with ws:// and wss:// URLs, and a TCP client and a WebSocket client
on one broker seeing each other's messages.
"""

import json
import os
import shutil
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest

from conftest import HATO_BIN, free_port
from tlspki import pki  # noqa: F401 (fixture)

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")
NODE = shutil.which("node")
HAVE_MQTT = os.path.isfile(os.path.join(NODE_DIR, "node_modules", "mqtt", "package.json"))
BIN = os.path.dirname(HATO_BIN)


def brokers(broker_factory, pki=None, extra=""):
    tcp, ws = free_port(), free_port()
    conf = f"{extra}listener {tcp} 127.0.0.1\nlistener {ws} 127.0.0.1\nprotocol websockets\n"
    wss = None
    if pki:
        wss = free_port()
        conf += (f"listener {wss} 127.0.0.1\nprotocol websockets\n"
                 f"certfile {pki['server.crt']}\nkeyfile {pki['server.key']}\n")
    b = broker_factory(conf, listener=False)
    b.tcp, b.ws, b.wss = tcp, ws, wss
    return b


# ---- Node's mqtt ----------------------------------------------------------


@pytest.mark.skipif(NODE is None or not HAVE_MQTT,
                    reason="node and tests/interop/node/node_modules are needed "
                           "(npm ci --prefix tests/interop/node)")
@pytest.mark.parametrize("scheme", ["ws", "wss"])
@pytest.mark.parametrize("version", [4, 5])
def test_node_mqtt_over_websocket(broker_factory, pki, scheme, version):
    """MQTT.js over ws/wss: QoS 0/1/2 once each, retained, will, MQTT 5 properties."""
    b = brokers(broker_factory, pki)
    port = b.ws if scheme == "ws" else b.wss
    args = [NODE, os.path.join(NODE_DIR, "ws.js"), f"{scheme}://127.0.0.1:{port}/mqtt",
            str(version)] + ([pki["ca.crt"]] if scheme == "wss" else [])
    r = subprocess.run(args, cwd=NODE_DIR, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=30)
    out = r.stdout.decode().strip().splitlines()
    assert out, f"no output from node: {r.stderr.decode()}"
    rep = json.loads(out[-1])
    assert r.returncode == 0 and rep.get("ok"), rep
    assert [(m["payload"], m["qos"]) for m in rep["messages"]] == [("q0", 0), ("q1", 1),
                                                                   ("q2", 2)]
    if version == 5:
        for m in rep["messages"]:
            assert m["properties"]["userProperties"] == {"k": "v"}
            assert 0 < m["properties"]["messageExpiryInterval"] <= 60
    assert rep["retained"]["payload"] == "kept" and rep["retained"]["retain"]
    assert rep["will"]["payload"] == "gone"


# ---- paho ------------------------------------------------------------------


def paho_client(cid, port, ws=False, ca=None, version=mqtt.MQTTv311):
    c = mqtt.Client(client_id=cid, protocol=version, transport="websockets" if ws else "tcp")
    if ws:
        c.ws_set_options(path="/mqtt")
    if ca:
        c.tls_set(ca_certs=ca)
        c.tls_insecure_set(True)  # the test certificate names 127.0.0.1 in its SAN only
    got, ready = [], threading.Event()
    c.on_message = lambda cl, u, m: got.append((m.topic, m.payload, m.qos))
    c.on_connect = lambda *a: ready.set()
    c.on_subscribe = lambda *a: ready.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ready.wait(10), f"{cid} did not connect"
    c.got = got
    return c


def wait_for(pred, timeout=10):
    ev = threading.Event()
    for _ in range(int(timeout * 20)):
        if pred():
            return True
        ev.wait(0.05)  # paho delivers on its own thread: poll what it appended
    return pred()


@pytest.mark.parametrize("scheme", ["ws", "wss"])
@pytest.mark.parametrize("version", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_paho_websocket_and_tcp_see_each_other(broker_factory, pki, scheme, version):
    """paho over ws/wss and paho over TCP on one broker: messages go both ways."""
    b = brokers(broker_factory, pki)
    port, ca = (b.ws, None) if scheme == "ws" else (b.wss, pki["ca.crt"])
    w = paho_client("paho-ws", port, ws=True, ca=ca, version=version)
    t = paho_client("paho-tcp", b.tcp, version=version)
    try:
        for c, topic in ((w, "from/tcp"), (t, "from/ws")):
            done = threading.Event()
            c.on_subscribe = lambda *a, d=done: d.set()
            c.subscribe(topic, qos=1)
            assert done.wait(10)
        t.publish("from/tcp", b"tcp says hi", qos=1).wait_for_publish(10)
        w.publish("from/ws", b"ws says hi", qos=2).wait_for_publish(10)
        assert wait_for(lambda: w.got and t.got)
        assert w.got[0][:2] == ("from/tcp", b"tcp says hi")
        assert t.got[0][:2] == ("from/ws", b"ws says hi")
    finally:
        for c in (w, t):
            c.loop_stop()
            c.disconnect()


# ---- hato's own clients ----------------------------------------------------------


def test_hato_sub_and_pub_with_ws_urls(broker_factory, pki):
    """hato-sub -L ws://..., hato-pub -L wss://... --cafile, and a paho TCP publisher."""
    b = brokers(broker_factory, pki, "log_type all\n")
    sub = subprocess.Popen([os.path.join(BIN, "hato-sub"), "-L", f"ws://127.0.0.1:{b.ws}/mqtt",
                            "-t", "cli/#", "-v", "-C", "2", "-W", "20", "-q", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        b.wait_log(r"New client connected from .* as auto-")
        b.wait_log(r" 1 cli/#")
        r = subprocess.run([os.path.join(BIN, "hato-pub"), "-L",
                            f"wss://127.0.0.1:{b.wss}/mqtt", "--cafile", pki["ca.crt"],
                            "-t", "cli/wss", "-m", "over wss", "-q", "1"],
                           capture_output=True, timeout=20)
        assert r.returncode == 0, r.stderr
        t = paho_client("cli-tcp", b.tcp)
        t.publish("cli/tcp", b"over tcp", qos=1).wait_for_publish(10)
        out, err = sub.communicate(timeout=20)
        t.loop_stop()
        t.disconnect()
        assert sub.returncode == 0, err
        assert out.decode().splitlines() == ["cli/wss over wss", "cli/tcp over tcp"]
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()


def test_hato_pub_ws_upgrade_refused_is_reported(broker_factory):
    """A WebSocket upgrade the listener refuses is a clear one-line error."""
    tcp, ws = free_port(), free_port()
    broker_factory(f"listener {tcp} 127.0.0.1\nlistener {ws} 127.0.0.1\nprotocol websockets\n"
                   "websockets_origin http://only.example\n", listener=False)
    r = subprocess.run([os.path.join(BIN, "hato-pub"), "-L", f"ws://127.0.0.1:{ws}/mqtt",
                        "-t", "x", "-m", "y"], capture_output=True, timeout=20)
    assert r.returncode != 0
    assert b"WebSocket upgrade refused: HTTP 403 Forbidden" in r.stderr
