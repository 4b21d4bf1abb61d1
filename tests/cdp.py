"""A headless Chromium driven through the DevTools protocol, for the console's
browser tests (tests/integration/test_console.py, docs/console.md).

The browser is Debian's /usr/bin/chromium started with --remote-debugging-pipe:
it reads commands from its fd 3 and writes answers and events to its fd 4, each
message one JSON object ended by a NUL byte, so no WebSocket library is needed.
Every wait has a deadline; the browser is stopped by its PID at the end (close()
or the `browser` fixture), and its profile lives in a temporary directory.

    with Browser(tmp_path) as b:
        b.navigate("http://127.0.0.1:PORT/console/")
        b.wait_for("#login-user")
        b.type("#login-user", "admin")
        b.click("#login-submit")
        b.wait_until("document.body.dataset.page === 'overview'")
        b.screenshot(path)

JavaScript dialogs (confirm, alert) are accepted as they open (dialogs), and
page errors, console errors and CSP reports are collected in .errors.
"""

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import time

import pytest

CHROMIUM = os.environ.get("HATO_CHROMIUM", "/usr/bin/chromium")
STEP = 10.0  # seconds any one protocol command may take


class CdpError(Exception):
    pass


def chromium_or_skip():
    """The browser's path, or a pytest skip with the reason."""
    path = CHROMIUM if os.path.isabs(CHROMIUM) else shutil.which(CHROMIUM)
    if not path or not os.access(path, os.X_OK):
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian package chromium; scripts/deps.sh test)")
    return path


class Browser:
    def __init__(self, tmp_path, width=1366, height=768, accept_dialogs=True):
        self.path = chromium_or_skip()
        self.profile = os.path.join(str(tmp_path), "chromium-profile")
        os.makedirs(self.profile, exist_ok=True)
        self.accept_dialogs = accept_dialogs
        self.errors = []   # page exceptions, console errors, CSP and network log entries
        self.dialogs = []  # messages of the dialogs accepted
        self.events = []   # other events, oldest first (bounded)
        self.next_id = 1
        self.buf = b""
        self.session = None
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()

        def fds():  # in the child: its fd 3 reads our commands, its fd 4 writes to us
            a = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        args = [self.path, "--headless=new", "--disable-gpu", "--remote-debugging-pipe",
                f"--user-data-dir={self.profile}", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--disable-default-apps", "--mute-audio",
                "--password-store=basic", "--use-mock-keychain", f"--window-size={width},{height}",
                "about:blank"]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")
        self.log = open(os.path.join(str(tmp_path), "chromium.log"), "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, pass_fds=(3, 4), preexec_fn=fds,
                                     start_new_session=True)
        os.close(cmd_r)
        os.close(res_w)
        self.wfd, self.rfd = cmd_w, res_r
        try:
            target = self.send("Target.createTarget", {"url": "about:blank"}, session=False)
            self.session = self.send("Target.attachToTarget",
                                     {"targetId": target["targetId"], "flatten": True},
                                     session=False)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.send(domain + ".enable")
            self.viewport(width, height)
        except Exception:
            self.close()
            raise

    # ---- the pipe ------------------------------------------------------------

    def _write(self, msg):
        data = json.dumps(msg).encode() + b"\0"
        deadline = time.monotonic() + STEP
        while data:
            _, w, _ = select.select([], [self.wfd], [], max(0, deadline - time.monotonic()))
            if not w:
                raise CdpError("the browser does not read its commands")
            data = data[os.write(self.wfd, data):]

    def _read(self, deadline):
        """One message, or None when the deadline passed."""
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.rfd], [], [], left)
            if not r:
                return None
            chunk = os.read(self.rfd, 1 << 16)
            if not chunk:
                raise CdpError(f"the browser closed its pipe (exit {self.proc.poll()})")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def _event(self, msg):
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Page.javascriptDialogOpening":
            self.dialogs.append(p.get("message"))
            self._write({"id": 0, "method": "Page.handleJavaScriptDialog",
                         "params": {"accept": self.accept_dialogs}, "sessionId": self.session})
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.errors.append("exception: " + (d.get("exception", {}).get("description")
                                                 or d.get("text", "")))
        elif method == "Runtime.consoleAPICalled" and p.get("type") == "error":
            self.errors.append("console: " + " ".join(str(a.get("value", a.get("description")))
                                                     for a in p.get("args", [])))
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            self.errors.append(f"log {e.get('source')}: {e.get('text')} {e.get('url', '')}")
        else:
            self.events.append(msg)
            del self.events[:-500]

    def send(self, method, params=None, session=True, timeout=STEP):
        """A command; its result, or CdpError with the browser's error."""
        mid = self.next_id
        self.next_id += 1
        msg = {"id": mid, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        self._write(msg)
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if m is None:
                raise CdpError(f"{method}: no answer within {timeout} s")
            if m.get("id") == mid:
                if "error" in m:
                    raise CdpError(f"{method}: {m['error'].get('message')}")
                return m.get("result", {})
            if "method" in m:
                self._event(m)

    def pump(self, seconds):
        """Handle events for up to `seconds` (dialogs opened by a click, logs)."""
        deadline = time.monotonic() + seconds
        while True:
            m = self._read(deadline)
            if m is None:
                return
            if "method" in m:
                self._event(m)

    # ---- page actions --------------------------------------------------------

    def navigate(self, url):
        r = self.send("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise CdpError(f"navigate {url}: {r['errorText']}")

    def evaluate(self, expr, timeout=STEP):
        """The value of a JavaScript expression (promises awaited)."""
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True,
                                           "awaitPromise": True}, timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CdpError(f"evaluate {expr!r}: "
                           f"{d.get('exception', {}).get('description') or d.get('text')}")
        return r.get("result", {}).get("value")

    def wait_until(self, expr, timeout=10.0, what=None):
        """Poll a JavaScript expression until it is truthy; its value, or an
        AssertionError after timeout seconds."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(f"(() => {{ try {{ const v = ({expr}); "
                                      f"return v instanceof Node ? true : v; }} "
                                      f"catch (e) {{ return null; }} }})()")
            except CdpError:
                value = None  # a navigation in progress
            if value:
                return value
            self.pump(0.1)
        raise AssertionError(f"{what or expr} still false after {timeout} s "
                             f"(page errors: {self.errors})")

    def wait_for(self, selector, timeout=10.0):
        """Wait until selector matches a visible element."""
        s = json.dumps(selector)
        return self.wait_until(f"(e => !!e && e.getClientRects().length > 0)"
                               f"(document.querySelector({s}))", timeout, f"selector {selector}")

    def text(self, selector):
        return self.evaluate(f"document.querySelector({json.dumps(selector)})?.textContent ?? null")

    def click(self, selector):
        """A real mouse click at the middle of the element (scrolled into view)."""
        s = json.dumps(selector)
        box = self.evaluate(f"(() => {{ const e = document.querySelector({s}); if (!e) return null;"
                            f" e.scrollIntoView({{block: 'center'}});"
                            f" const r = e.getBoundingClientRect();"
                            f" return [r.left + r.width / 2, r.top + r.height / 2]; }})()")
        if not box:
            raise AssertionError(f"click: no element {selector}")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1],
                                                   "button": "left", "clickCount": 1})
        self.pump(0.05)

    def type(self, selector, text, clear=True):
        """Focus the field and type text into it (input events as a keyboard's)."""
        s = json.dumps(selector)
        ok = self.evaluate(f"(() => {{ const e = document.querySelector({s}); if (!e) return false;"
                           f" e.focus(); if ({'true' if clear else 'false'}) e.value = '';"
                           f" return true; }})()")
        if not ok:
            raise AssertionError(f"type: no element {selector}")
        self.send("Input.insertText", {"text": text})

    def press_enter(self):
        for kind in ("keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter",
                                                 "windowsVirtualKeyCode": 13, "text": "\r"})

    def viewport(self, width, height, mobile=None):
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1,
                   "mobile": width < 600 if mobile is None else mobile})

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", {"format": "png"}, timeout=20)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def overflow(self):
        """How many CSS pixels the page is wider than the viewport (0: none)."""
        return self.evaluate("document.documentElement.scrollWidth - window.innerWidth")

    # ---- the end -------------------------------------------------------------

    def close(self):
        p = self.proc
        if p.poll() is None:
            try:
                self._write({"id": self.next_id, "method": "Browser.close"})
                p.wait(timeout=5)
            except (CdpError, OSError, subprocess.TimeoutExpired):
                pass
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)
        try:  # its helpers (renderer, zygote) are in the session started for it
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for fd in (self.wfd, self.rfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
