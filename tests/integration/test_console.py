"""The web console (console/, src/broker/admin_console.c, docs/console.md): its
files as an admin listener serves them, then the console itself in a headless
Chromium (tests/cdp.py) against the real broker. Rule names are docs/console.md's."""

import os
import re
import subprocess
import time

import pytest

from admin_consoleutil import (CONSOLE, PAGES, VIEWPORTS, browser, console_broker,  # noqa: F401
                               console_copy, console_login, goto, no_overflow, page_errors, shot)
from adminutil import ADMIN_USER, Api, admin_broker
from conftest import HATO_BIN, RUN_AS, free_port
from mqttraw import PUBLISH, connected_client, publish, subscribe_ok
from test_metrics import http as raw_http, split_response

CSP = ("default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
       "frame-ancestors 'none'")


def get(port, target, method="GET"):
    raw = raw_http(port, f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    line, status, headers, body = split_response(raw)
    return status, headers, body


def test_static_files_with_their_headers(broker_factory, tmp_path):
    """console-static: / and /console redirect to /console/; the files are served
    without a session, byte for byte, with their type, the CSP and nosniff; HEAD has
    the length and no body; other methods on them still need a session."""
    b = console_broker(broker_factory, tmp_path)
    for target in ("/", "/console"):
        status, h, _ = get(b.aport, target)
        assert status == 302 and h["location"] == "/console/", (target, status, h)
        assert h["content-security-policy"] == CSP
    for target, name, ctype in (("/console/", "index.html", "text/html"),
                                ("/console/index.html", "index.html", "text/html"),
                                ("/console/app.js?v=1", "app.js", "text/javascript"),
                                ("/console/style.css", "style.css", "text/css"),
                                ("/console/mqttws.js", "mqttws.js", "text/javascript")):
        status, h, body = get(b.aport, target)
        with open(os.path.join(CONSOLE, name), "rb") as f:
            want = f.read()
        assert status == 200 and body == want, (target, status)
        assert h["content-type"].startswith(ctype), (target, h)
        assert h["content-security-policy"] == CSP
        assert h["x-content-type-options"] == "nosniff"
        assert int(h["content-length"]) == len(want)
    status, h, body = get(b.aport, "/console/app.js", "HEAD")
    assert status == 200 and body == b"" and int(h["content-length"]) > 1000
    status, h, body = get(b.aport, "/console/nothing.js")
    assert status == 404 and h["content-type"] == "application/json"
    status, h, _ = get(b.aport, "/console/app.js", "POST")
    assert status == 401  # a write needs a session: nothing is open but GET/HEAD
    api = Api(b.aport)
    assert api.login()[0] == 200
    status, r, _ = api.request("DELETE", "/console/app.js")
    assert status == 405 and r.getheader("Allow") == "GET, HEAD"


def test_traversal_and_symlinks_refused(broker_factory, tmp_path):
    """console-traversal: '..' (plain or escaped), an escaped '/', and a symlink out
    of the directory are refused; a file beside the directory is never served."""
    d = console_copy(tmp_path)
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the browser\n")
    os.symlink(str(secret), os.path.join(d, "link.txt"))
    os.symlink("/etc", os.path.join(d, "etc"))
    b = console_broker(broker_factory, tmp_path, console_dir=d)
    for target in ("/console/../secret.txt", "/console/%2e%2e/secret.txt",
                   "/console/..%2fsecret.txt", "/console/%2E%2E%2Fsecret.txt",
                   "/console/link.txt", "/console/etc/passwd", "/console/./app.js",
                   "/console/%00app.js"):
        status, _, body = get(b.aport, target)
        assert status in (400, 403, 404), (target, status)
        assert b"not for the browser" not in body and b"root:" not in body, target
    assert get(b.aport, "/console/app.js")[0] == 200


def test_console_dir_errors_stop_startup(tmp_path):
    """console-dir: an admin_console_dir that is missing or no directory stops start-up
    with FILE:LINE: reason."""
    f = tmp_path / "file"
    f.write_text("x")
    for value, why in ((tmp_path / "missing", "No such file or directory"),
                       (f, "not a directory")):
        conf = tmp_path / "h.conf"
        conf.write_text(f"listener {free_port()} 127.0.0.1\nadmin_console_dir {value}\n{RUN_AS}")
        p = subprocess.run([HATO_BIN, "-c", str(conf)], capture_output=True, text=True,
                           timeout=20)
        assert p.returncode != 0
        assert f"{conf}:2: admin_console_dir {value}: {why}" in p.stderr + p.stdout, p.stderr


def test_console_dir_gone_answers_404(broker_factory, tmp_path):
    """console-dir: a directory removed while running answers 404 with the reason,
    and the API still works."""
    d = console_copy(tmp_path)
    b = console_broker(broker_factory, tmp_path, console_dir=d)
    assert get(b.aport, "/console/")[0] == 200
    os.rename(d, d + ".gone")
    status, _, body = get(b.aport, "/console/")
    assert status == 404 and b"admin_console_dir" in body
    assert get(b.aport, "/healthz")[0] == 200


def test_default_console_dir(broker_factory, tmp_path):
    """console-dir: without admin_console_dir the installed directory is served; when it
    is missing (a build tree not installed), start-up warns once and /console/ is 404
    with the reason while the API works."""
    b = admin_broker(broker_factory, tmp_path)
    status, _, body = get(b.aport, "/console/")
    if "Warning: admin console directory" in b.log:
        assert re.search(r"admin console directory /\S+/hato/console: No such file", b.log), b.log
        assert status == 404 and b"admin_console_dir" in body
    else:
        assert status == 200 and b"<title>hato console</title>" in body
    assert get(b.aport, "/healthz")[0] == 200


# ---- in the browser ---------------------------------------------------------------

def test_login_overview_config_logout(broker_factory, tmp_path, browser):
    """console-login, console-overview, console-config, console-logout: a wrong
    password is shown on the form; after logging in, the overview's numbers follow
    the broker (a client connecting changes the connection count, a burst of
    publishes the rate in); the config page shows the configuration with secrets
    masked; logging out ends the session in the broker, not only in the page."""
    b = console_broker(broker_factory, tmp_path)
    console_login(browser, b, password="wrong", expect_ok=False)
    assert "wrong user name or password" in browser.text("#login-error")
    shot(browser, tmp_path, "login")
    console_login(browser, b)
    assert browser.text("#who-name").startswith(ADMIN_USER)
    browser.wait_until("document.querySelector('#stat-connections').textContent === '0'")
    shot(browser, tmp_path, "overview-idle")
    c = connected_client(b, "console-watch")
    try:
        browser.wait_until("document.querySelector('#stat-connections').textContent === '1'",
                           timeout=8, what="1 connection shown")
        for i in range(200):
            c.send(publish("console/load", b"x" * 10))
        browser.wait_until("parseFloat(document.querySelector('#stat-in').textContent) > 0",
                           timeout=8, what="a rate of messages in")
        browser.pump(2.2)  # one more sample on the charts for the screenshot
        shot(browser, tmp_path, "overview")
    finally:
        c.close()
    browser.wait_until("document.querySelector('#stat-connections').textContent === '0'",
                       timeout=8, what="the connection gone")

    goto(browser, b, "config")
    browser.wait_for("#config-global")
    cell = "document.querySelector('#config-global tr[data-key=\"admin_password_file\"] td')"
    assert browser.evaluate(f"{cell}.textContent") == "***"
    ports = browser.evaluate("[...document.querySelectorAll('main h2')].map(h => h.textContent)"
                             ".join(' ')")
    assert f"Listener {b.port}" in ports and f"Listener {b.aport}" in ports
    browser.type("#config-filter", "max_inflight")
    visible = browser.evaluate("[...document.querySelectorAll('#config-global tr')]"
                               ".filter(t => !t.hidden).map(t => t.dataset.key)")
    assert visible and all("max_inflight" in k for k in visible), visible
    shot(browser, tmp_path, "config")

    browser.click("#logout")
    browser.wait_until("document.body.dataset.page === 'login'", what="the login page")
    assert browser.evaluate("sessionStorage.getItem('hato.csrf')") is None
    status = browser.evaluate("fetch('/api/v1/metrics').then(r => r.status)")
    assert status == 401  # the cookie no longer opens the API
    assert "Admin logout: user 'root-admin'" in b.log
    assert page_errors(browser) == []


def test_reload_button_sends_the_csrf_token(broker_factory, tmp_path, browser):
    """console-csrf: the reload button's POST carries X-CSRF-Token (the broker
    refuses a write without it) and reloads; the confirmation dialog was asked."""
    b = console_broker(broker_factory, tmp_path)
    console_login(browser, b)
    browser.click("#reload")
    browser.wait_until("document.querySelector('#flash').textContent.includes('reloaded')",
                       timeout=15, what="the reload's answer")
    assert browser.dialogs and "Reload" in browser.dialogs[0]
    assert "Admin reload: requested by user 'root-admin'" in b.log
    # The same fetch without the token is refused: the button's success came from it.
    status = browser.evaluate("fetch('/api/v1/reload', {method: 'POST'}).then(r => r.status)")
    assert status == 403


def test_pages_fit_desktop_and_phone(broker_factory, tmp_path, browser):
    """console-responsive: at 1366x768 and at 375x812 no page is wider than the
    screen (document scrollWidth <= innerWidth); pages whose endpoints are not in
    this broker say so instead of failing."""
    b = console_broker(broker_factory, tmp_path)
    console_login(browser, b)
    for name, (w, h) in VIEWPORTS.items():
        browser.viewport(w, h)
        no_overflow(browser, f"login at {name}")
        for page in PAGES:
            goto(browser, b, page)
            # the first answer of the page: a table, a form, or "not available"
            browser.wait_until("document.querySelector('main table, main .unavailable, "
                               "main canvas, main form')", what=f"{page} rendered")
            browser.pump(0.3)
            no_overflow(browser, f"{page} at {name} {w}x{h}")
            if page in ("overview", "config", "topics", "users") and name == "phone":
                shot(browser, tmp_path, f"{page}-phone")
    browser.evaluate("location.hash = '#/nowhere'")
    browser.wait_until("document.body.dataset.page === 'overview'", what="unknown -> overview")
    assert page_errors(browser) == []


def test_topic_tester_over_websocket(broker_factory, tmp_path, browser):
    """console-topics: the topic tester's MQTT 3.1.1 client connects over WebSocket
    (subprotocol mqtt) with the user and password typed in, subscribes, shows what an
    MQTT client publishes (as text, never as markup), and publishes at QoS 0."""
    pwfile = tmp_path / "mqtt-users"
    subprocess.run([os.path.join(os.path.dirname(HATO_BIN), "hato-passwd"), "-c", "-b",
                    str(pwfile), "tester", "tester-pw"], check=True, capture_output=True,
                   timeout=20)
    b = console_broker(broker_factory, tmp_path, websockets=True, anonymous=False,
                       extra=f"password_file {pwfile}\n")
    console_login(browser, b)
    goto(browser, b, "topics")
    browser.wait_until("document.querySelector('#tt-url').value !== '' || "
                       "document.querySelector('#tt-state').textContent.includes('URL')",
                       what="the listeners' answer")
    browser.type("#tt-url", f"ws://127.0.0.1:{b.wsport}/mqtt")
    browser.type("#tt-user", "tester")
    browser.type("#tt-pass", "wrong")
    browser.type("#tt-filter", "lab/#")
    browser.click("#tt-connect")
    browser.wait_until("document.querySelector('#tt-state').textContent.includes('refused')",
                       what="CONNACK refused shown")
    assert "bad user name or password" in browser.text("#tt-state") or \
        "not authorized" in browser.text("#tt-state")
    browser.type("#tt-pass", "tester-pw")
    browser.click("#tt-connect")
    browser.wait_until("document.querySelector('#tt-state').textContent === 'subscribed to lab/#'",
                       what="SUBACK shown")

    pub = connected_client(b, "tt-peer", username="tester", password=b"tester-pw")
    try:
        subscribe_ok(pub, 1, [("lab/from-browser", 0)])
        markup = "<img src=x onerror=\"window.pwned=1\"><b>bold</b>"
        pub.send(publish("lab/<b>t</b>", markup.encode()))
        browser.wait_until("document.querySelector('#tt-messages li')", what="a message shown")
        li = browser.evaluate("document.querySelector('#tt-messages li').textContent")
        assert "lab/<b>t</b>" in li and markup in li
        assert browser.evaluate("document.querySelectorAll('#tt-messages img, #tt-messages b')"
                                ".length") == 0
        assert browser.evaluate("window.pwned === undefined")

        browser.type("#tt-topic", "lab/from-browser")
        browser.type("#tt-payload", "hello from the console ✓")
        browser.click("#tt-publish")
        p = pub.expect(PUBLISH, timeout=8)
        assert p.topic == "lab/from-browser"
        assert p.payload == "hello from the console ✓".encode()
        # the browser's own subscription lab/# sees it too
        browser.wait_until("document.querySelectorAll('#tt-messages li').length >= 2")
        shot(browser, tmp_path, "topics")
    finally:
        pub.close()
    assert page_errors(browser) == []
