"""A real browser: Debian's chromium, headless, loads a page from hato's own
http_dir; the page (tests/interop/browser/index.html) connects with the
browser build of the `mqtt` npm package over ws (or wss with the test CA),
subscribes, publishes, and writes what it receives into the DOM. A paho
client on a plain TCP listener answers the page, so the DOM shows both the
page's own message and one from outside. The DOM comes back with
--dump-dom, which chromium prints once the page is idle (the MQTT traffic
is part of the page's work, under --virtual-time-budget).
"""

import base64
import hashlib
import os
import shutil
import signal
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest

from conftest import free_port
from tlspki import pki  # noqa: F401 (fixture)

HERE = os.path.dirname(os.path.abspath(__file__))
MQTT_JS = os.path.join(HERE, "node", "node_modules", "mqtt", "dist", "mqtt.min.js")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = [
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason="chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(not os.path.isfile(MQTT_JS),
                       reason="tests/interop/node/node_modules is missing: npm ci --prefix "
                              "tests/interop/node"),
]


def site(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    shutil.copy(os.path.join(HERE, "browser", "index.html"), www / "index.html")
    shutil.copy(MQTT_JS, www / "mqtt.min.js")
    return www


def answerer(port, ca=None):
    """A TCP client that answers the page's browser/ready with browser/python."""
    done = threading.Event()
    c = mqtt.Client(client_id="python-answerer", protocol=mqtt.MQTTv311)

    def on_connect(client, userdata, flags, rc):
        client.subscribe("browser/ready", qos=1)
        done.set()

    def on_message(client, userdata, msg):
        client.publish("browser/python", b"hello from python", qos=1)

    c.on_connect, c.on_message = on_connect, on_message
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert done.wait(10), "the answering client did not connect"
    return c


def spki_hash(cert):
    """base64 SHA-256 of the certificate's SubjectPublicKeyInfo (chromium's SPKI pin)."""
    pub = subprocess.run(["openssl", "x509", "-in", cert, "-pubkey", "-noout"],
                         capture_output=True, check=True, timeout=30).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, check=True, timeout=30).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def dump_dom(tmp_path, url, extra=()):
    """Run headless chromium on url; its DOM once the page is idle. Stopped by PID."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-dev-shm-usage", "--no-first-run",
           "--disable-extensions", f"--user-data-dir={tmp_path / 'chromium'}",
           "--virtual-time-budget=15000", *extra, "--dump-dom", url]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        raise AssertionError("chromium did not finish in 60 s:\n" + err.decode(errors="replace"))
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    return out.decode(errors="replace"), err.decode(errors="replace")


def check_page(dom, err, broker):
    assert '<div id="status">done</div>' in dom, (
        f"page did not finish:\n{dom[-2000:]}\n--- chromium stderr:\n{err[-2000:]}\n"
        f"--- broker log:\n{broker.log}")
    assert "browser/page hello from the page" in dom
    assert "browser/python hello from python" in dom


def test_browser_page_over_ws(broker_factory, tmp_path):
    www = site(tmp_path)
    tcp, ws = free_port(), free_port()
    b = broker_factory(f"listener {tcp} 127.0.0.1\nlistener {ws} 127.0.0.1\n"
                       f"protocol websockets\nhttp_dir {www}\n", listener=False)
    a = answerer(tcp)
    try:
        dom, err = dump_dom(tmp_path, f"http://127.0.0.1:{ws}/index.html")
        check_page(dom, err, b)
    finally:
        a.loop_stop()
        a.disconnect()
    b.wait_log(r"closed: HTTP GET /mqtt\.min\.js: 200")
    b.wait_log(r"New client connected from 127\.0\.0\.1:\d+ as browser-\w+ \(p5")


def test_browser_page_over_wss(broker_factory, tmp_path, pki):
    www = site(tmp_path)
    tcp, wss = free_port(), free_port()
    b = broker_factory(f"listener {tcp} 127.0.0.1\nlistener {wss} 127.0.0.1\n"
                       f"protocol websockets\nhttp_dir {www}\n"
                       f"certfile {pki['server.crt']}\nkeyfile {pki['server.key']}\n",
                       listener=False)
    a = answerer(tcp)
    try:
        # The test CA is not in chromium's store: trust the server key by its pin.
        dom, err = dump_dom(tmp_path, f"https://127.0.0.1:{wss}/index.html",
                            [f"--ignore-certificate-errors-spki-list={spki_hash(pki['server.crt'])}"])
        check_page(dom, err, b)
    finally:
        a.loop_stop()
        a.disconnect()
