"""A real browser: Debian's chromium, headless, loads a page from hato's own
http_dir; the page (tests/interop/browser/index.html) connects with the
browser build of the `mqtt` npm package over ws (or wss with the test CA),
subscribes, publishes, and writes what it receives into the DOM. A paho
client on a plain TCP listener answers the page, so the DOM shows both the
page's own message and one from outside. Chromium is driven over the
DevTools protocol: the test navigates, awaits the page's "done" console
message (an event, no polling), then reads the DOM.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
import pytest

from conftest import free_port
from tlspki import pki  # noqa: F401 (fixture)
from wsraw import OP_TEXT, WsRaw, frame

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


class Chromium:
    """Headless chromium driven over the DevTools protocol (a WebSocket of its
    own, spoken with tests/wsraw.py). Stopped by PID (its process group)."""

    def __init__(self, tmp_path, extra=()):
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-dev-shm-usage", "--no-first-run",
               "--disable-extensions", f"--user-data-dir={tmp_path / 'chromium'}",
               "--remote-debugging-port=0", *extra, "about:blank"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.stderr = []
        port = None
        deadline = time.monotonic() + 30
        # Chromium says where its DevTools endpoint is on stderr: await that line.
        while port is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode(errors="replace")
            if not line:
                break
            self.stderr.append(line)
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if m:
                port = int(m.group(1))
        if port is None:
            self.stop()
            raise AssertionError("chromium did not start:\n" + "".join(self.stderr))
        threading.Thread(target=self._drain, daemon=True).start()
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list",
                                                    timeout=10).read())
        page = next(t for t in targets if t["type"] == "page")
        path = page["webSocketDebuggerUrl"].split(str(port), 1)[1]
        self.ws = WsRaw(port, timeout=30)
        self.ws.upgrade(path=path, protocol=None)
        self.next_id = 0
        self.events = []

    def _drain(self):
        for line in self.proc.stderr:
            self.stderr.append(line.decode(errors="replace"))

    def _recv(self, deadline):
        data = b""
        while True:
            fin, op, payload = self.ws.recv_frame(max(deadline - time.monotonic(), 0.01))
            data += payload
            if fin:
                return json.loads(data)

    def call(self, method, params=None, timeout=30):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(frame(OP_TEXT, json.dumps({"id": mid, "method": method,
                                                "params": params or {}}).encode()))
        deadline = time.monotonic() + timeout
        while True:
            msg = self._recv(deadline)
            if msg.get("id") == mid:
                return msg.get("result", msg)
            self.events.append(msg)

    def wait_console(self, prefixes, timeout=30):
        """The first console message starting with one of prefixes (an event, not a poll)."""
        deadline = time.monotonic() + timeout
        seen = []

        def match(ev):
            if ev.get("method") != "Runtime.consoleAPICalled":
                return None
            text = " ".join(str(a.get("value")) for a in ev["params"].get("args", []))
            seen.append(text)
            return text if text.startswith(prefixes) else None

        for ev in self.events:
            if (t := match(ev)):
                return t, seen
        while time.monotonic() < deadline:
            try:
                ev = self._recv(deadline)
            except TimeoutError:
                break
            self.events.append(ev)
            if (t := match(ev)):
                return t, seen
        return None, seen

    def text(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        return r.get("result", {}).get("value")

    def stop(self):
        if getattr(self, "ws", None):
            self.ws.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def run_page(tmp_path, url, broker, extra=()):
    """Load url in chromium; wait for the page to say it is done; return its text."""
    ch = Chromium(tmp_path, extra)
    try:
        ch.call("Runtime.enable")
        ch.call("Page.navigate", {"url": url})
        said, seen = ch.wait_console(("hato-browser-done", "hato-browser-error"))
        status = ch.text("document.getElementById('status') && "
                         "document.getElementById('status').textContent")
        log = ch.text("document.getElementById('log') && "
                      "document.getElementById('log').textContent") or ""
        assert said == "hato-browser-done", (
            f"page status {status!r}, console {seen}, log {log!r}\n--- chromium:\n"
            f"{''.join(ch.stderr)[-2000:]}\n--- broker:\n{broker.log}")
        return status, log
    finally:
        ch.stop()


def check_page(status, log):
    assert status == "done"
    assert "browser/page hello from the page" in log
    assert "browser/python hello from python" in log


def test_browser_page_over_ws(broker_factory, tmp_path):
    www = site(tmp_path)
    tcp, ws = free_port(), free_port()
    b = broker_factory(f"listener {tcp} 127.0.0.1\nlistener {ws} 127.0.0.1\n"
                       f"protocol websockets\nhttp_dir {www}\n", listener=False)
    a = answerer(tcp)
    try:
        check_page(*run_page(tmp_path, f"http://127.0.0.1:{ws}/index.html", b))
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
        pin = f"--ignore-certificate-errors-spki-list={spki_hash(pki['server.crt'])}"
        check_page(*run_page(tmp_path, f"https://127.0.0.1:{wss}/index.html", b, [pin]))
    finally:
        a.loop_stop()
        a.disconnect()
