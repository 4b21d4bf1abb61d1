"""The admin API (protocol admin, src/broker/admin.c, docs/api.md) over real HTTP.

Every test starts the real hato binary with an MQTT listener and an admin
listener on ephemeral loopback ports and talks to it with http.client (raw
sockets where the bytes matter). Rule names are those of docs/api.md.
"""

import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

from adminutil import ADMIN_PASS, ADMIN_USER, WAIT, Api, admin_broker, admin_file
from authutil import hato_passwd
from conftest import HATO_BIN, free_port
from mqttraw import connected_client, publish_ok
from test_metrics import http as raw_http  # raw bytes in, everything until the close out
from tlspki import pki  # noqa: F401 (a fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Every endpoint, as docs/api.md lists them: (method, path, needs a session).
ENDPOINTS = [
    ("GET", "/healthz", False),
    ("POST", "/api/v1/login", False),
    ("POST", "/api/v1/logout", True),
    ("GET", "/api/v1/metrics", True),
    ("GET", "/api/v1/config", True),
    ("POST", "/api/v1/reload", True),
    ("GET", "/api/v1/openapi.json", True),
    # clients, sessions, subscriptions (admin_clients.c; test_admin_clients.py)
    ("GET", "/api/v1/clients", True),
    ("GET", "/api/v1/clients/{id}", True),
    ("DELETE", "/api/v1/clients/{id}", True),
    ("GET", "/api/v1/sessions", True),
    ("DELETE", "/api/v1/sessions/{id}", True),
    ("GET", "/api/v1/subscriptions", True),
]


def status_of(raw):
    return int(raw.split(b" ", 2)[1])


def test_healthz_needs_no_session(broker_factory, tmp_path):
    """api-auth-open: /healthz answers without authentication."""
    b = admin_broker(broker_factory, tmp_path)
    status, _, doc = Api(b.aport).json("GET", "/healthz")
    assert status == 200 and doc == {"status": "ok"}


def test_every_other_endpoint_refuses_without_a_session(broker_factory, tmp_path):
    """api-auth-required: every endpoint but /healthz and login (and unknown paths: no
    probing of what exists) answers 401 with a JSON error, with no cookie or a forged one."""
    b = admin_broker(broker_factory, tmp_path)
    api = Api(b.aport)
    paths = [(m, p) for m, p, auth in ENDPOINTS if auth] + [("GET", "/api/v1/nothing"),
                                                            ("DELETE", "/api/v1/config")]
    for cookie in (None, "0" * 64, "zz"):
        api.cookie = cookie
        for method, path in paths:
            status, _, doc = api.json(method, path)
            assert status == 401, (method, path, status, doc)
            assert "error" in doc
    assert "Reloading config" not in b.log


def test_login_wrong_then_right(broker_factory, tmp_path):
    """api-login: a wrong password (or unknown user) gets 401 after the login slow-down of
    the address (auth_fail_delay 300 ms, as MQTT logins); the right one a session cookie
    (HttpOnly, SameSite=Strict, Path=/, not Secure in plain HTTP) and a CSRF token."""
    b = admin_broker(broker_factory, tmp_path)
    api = Api(b.aport)
    t0 = time.monotonic()
    status, r, doc = api.login(password="wrong")
    elapsed = time.monotonic() - t0
    assert status == 401 and "error" in doc and r.getheader("Set-Cookie") is None
    assert elapsed >= 0.3, elapsed
    b.wait_log(r"Admin login from 127\.0\.0\.1:\d+ on port \d+ refused \(user 'root-admin'\): "
               r"wrong user or password; answered after 300 ms")
    # The delay doubles per failure from the address (security.c).
    t0 = time.monotonic()
    assert api.login(user="nobody")[0] == 401
    assert time.monotonic() - t0 >= 0.6
    status, r, doc = api.login()
    assert status == 200, doc
    cookie = r.getheader("Set-Cookie")
    attrs = [a.strip() for a in cookie.split(";")[1:]]
    assert sorted(attrs) == ["HttpOnly", "Path=/", "SameSite=Strict"], cookie
    assert re.fullmatch(r"[0-9a-f]{64}", doc["csrf"]) and doc["csrf"] != api.cookie
    assert doc["user"] == ADMIN_USER and doc["idle_timeout"] == 1800
    b.wait_log(r"Admin login: user 'root-admin' from 127\.0\.0\.1:\d+")
    status, _, _ = api.json("GET", "/api/v1/metrics")
    assert status == 200
    # Two logins: two different sessions.
    other = Api(b.aport)
    assert other.login()[0] == 200 and other.cookie != api.cookie


def test_login_bad_bodies(broker_factory, tmp_path):
    """api-errors: malformed JSON or missing fields are 400 with a JSON error."""
    b = admin_broker(broker_factory, tmp_path)
    api = Api(b.aport)
    for body in ['{"username": "a"', "[]", '{"username": "a"}', '{"username": 1, "password": "x"}',
                 "", "null"]:
        status, _, doc = api.json("POST", "/api/v1/login", body,
                                  headers={"Content-Type": "application/json"})
        assert status == 400, (body, status, doc)
        assert doc["error"].startswith("malformed JSON")


def test_csrf_required_on_writes(broker_factory, tmp_path):
    """api-csrf: a request other than GET with a cookie session needs X-CSRF-Token equal to
    the session's token: none or a wrong one is 403 (and nothing is done), the right one
    works."""
    b = admin_broker(broker_factory, tmp_path)
    api = Api(b.aport)
    assert api.login()[0] == 200
    other = Api(b.aport)
    assert other.login()[0] == 200
    for path in ("/api/v1/reload", "/api/v1/logout"):
        status, _, doc = api.json("POST", path, csrf=False)
        assert status == 403 and "CSRF" in doc["error"]
        status, _, doc = api.json("POST", path, headers={"X-CSRF-Token": "0" * 64}, csrf=False)
        assert status == 403
        # Another session's token is wrong too.
        status, _, doc = api.json("POST", path, headers={"X-CSRF-Token": other.csrf}, csrf=False)
        assert status == 403
    assert "Reloading config" not in b.log
    assert api.json("GET", "/api/v1/config")[0] == 200  # the session still works
    status, _, doc = api.json("POST", "/api/v1/reload")
    assert status == 200 and doc == {"reloaded": True}


def test_logout_ends_the_session(broker_factory, tmp_path):
    """api-logout: after logout the cookie is cleared and the session refused."""
    b = admin_broker(broker_factory, tmp_path)
    api = Api(b.aport)
    assert api.login()[0] == 200
    status, r, doc = api.json("POST", "/api/v1/logout")
    assert status == 200 and doc == {"logged_out": True}
    assert r.getheader("Set-Cookie").startswith("hato_session=; Max-Age=0")
    b.wait_log(r"Admin logout: user 'root-admin' from 127\.0\.0\.1:\d+")
    assert api.json("GET", "/api/v1/metrics")[0] == 401


def test_body_limits(broker_factory, tmp_path):
    """api-limits: a body over 64 KiB is 413 (from Content-Length, before it is read), a
    chunked body 411, a head over 8 KiB 431; a body sent in pieces is awaited."""
    b = admin_broker(broker_factory, tmp_path)
    big = b'{"username": "' + b"a" * 65536 + b'", "password": "x"}'
    out = raw_http(b.aport, b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                   % len(big) + big)
    assert status_of(out) == 413 and b'"error"' in out
    out = raw_http(b.aport, b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert status_of(out) == 411
    out = raw_http(b.aport, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 9000 + b"\r\n\r\n")
    assert status_of(out) == 431
    body = json.dumps({"username": ADMIN_USER, "password": ADMIN_PASS}).encode()
    head = b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    s = socket.create_connection(("127.0.0.1", b.aport), timeout=WAIT)
    try:
        s.sendall(head + body[:5])
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recv(100)  # nothing answered before the whole body is in
        s.settimeout(WAIT)
        s.sendall(body[5:])
        out = s.recv(65536)
    finally:
        s.close()
    assert status_of(out) == 200 and b"hato_session=" in out


def test_unknown_path_and_method(broker_factory, tmp_path):
    """api-errors: with a session, an unknown path is 404 and a wrong method 405 with Allow."""
    b = admin_broker(broker_factory, tmp_path)
    api = Api(b.aport)
    assert api.login()[0] == 200
    status, _, doc = api.json("GET", "/api/v1/nothing")
    assert status == 404 and doc == {"error": "no such path"}
    status, r, doc = api.json("DELETE", "/api/v1/config")
    assert status == 405 and r.getheader("Allow") == "GET"
    status, r, data = api.request("HEAD", "/api/v1/metrics")
    assert status == 405 and r.getheader("Allow") == "GET"
    status, r, doc = api.json("GET", "/api/v1/reload")
    assert status == 405 and r.getheader("Allow") == "POST"
    status, r, doc = api.json("GET", "/api/v1/login")
    assert status == 405 and r.getheader("Allow") == "POST"


def test_config_masks_secrets(broker_factory, tmp_path):
    """api-config: every directive's effective value, typed; any password (and psk) value
    is "***"; listeners carry their own settings."""
    pw = tmp_path / "users"
    hato_passwd("-c", "-b", pw, "u", "p")
    b = admin_broker(broker_factory, tmp_path,
                     extra=f"password_file {pw}\nmax_inflight_messages 7\nretain_available false\n")
    api = Api(b.aport)
    assert api.login()[0] == 200
    status, _, doc = api.json("GET", "/api/v1/config")
    assert status == 200
    g = doc["global"]
    assert g["password_file"] == "***" and g["admin_password_file"] == "***"
    assert g["psk_file"] is None  # not set: nothing to mask
    assert g["max_inflight_messages"] == 7 and g["retain_available"] is False
    assert g["max_keepalive"] == 65535  # a default is shown too
    text = json.dumps(doc)
    assert str(pw) not in text and "admins" not in text
    ports = {l["port"]: l for l in doc["listeners"]}
    assert ports[b.aport]["settings"]["protocol"] == "admin"
    assert ports[b.aport]["address"] == "127.0.0.1"
    assert ports[b.port]["settings"]["protocol"] == "mqtt"
    assert ports[b.port]["defined_at_line"] == 1


def test_reload_applies_and_reports_a_bad_config(broker_factory, tmp_path):
    """api-reload: POST /api/v1/reload does what SIGHUP does and answers its outcome, logged
    with the admin user; a bad file is 409 with FILE:LINE: reason and the running
    configuration stays."""
    b = admin_broker(broker_factory, tmp_path)
    api = Api(b.aport)
    assert api.login()[0] == 200
    with open(b.config_path) as f:
        good = f.read()
    with open(b.config_path, "w") as f:
        f.write(good + "max_queued_messages 123\n")
    status, _, doc = api.json("POST", "/api/v1/reload")
    assert status == 200 and doc == {"reloaded": True}
    b.wait_log(r"Admin reload: requested by user 'root-admin' from 127\.0\.0\.1:\d+")
    b.wait_log(r"Reloaded config")
    assert api.json("GET", "/api/v1/config")[2]["global"]["max_queued_messages"] == 123
    nlines = len((good + "max_queued_messages 123\n").splitlines())
    with open(b.config_path, "w") as f:
        f.write(good + "max_queued_messages 123\nno_such_directive 1\n")
    status, _, doc = api.json("POST", "/api/v1/reload")
    assert status == 409, doc
    assert f"{b.config_path}:{nlines + 1}:" in doc["error"], doc
    assert "the running configuration stays" in doc["error"]
    assert api.json("GET", "/api/v1/config")[2]["global"]["max_queued_messages"] == 123
    # Still serving MQTT and the API.
    c = connected_client(b)
    c.close()
    assert api.json("GET", "/healthz")[0] == 200


def parse_prometheus(text):
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_json_matches_prometheus(broker_factory, tmp_path):
    """api-metrics: /api/v1/metrics has the same figures as /metrics (taken with no traffic
    in between)."""
    mport = free_port()
    b = admin_broker(broker_factory, tmp_path, extra=f"listener {mport}\nprotocol metrics\n")
    c = connected_client(b, "pub")
    for i in range(5):
        publish_ok(c, f"a/{i}", b"x" * 10, qos=1, pid=i + 1, retain=i < 2)
    c.close()
    api = Api(b.aport)
    assert api.login()[0] == 200
    deadline = time.monotonic() + WAIT
    while True:  # the closed client's counts settle
        conn = http.client.HTTPConnection("127.0.0.1", mport, timeout=WAIT)
        conn.request("GET", "/metrics")
        prom = parse_prometheus(conn.getresponse().read().decode())
        conn.close()
        _, _, doc = api.json("GET", "/api/v1/metrics")
        if prom["hato_clients_connected"] == 0 or time.monotonic() > deadline:
            break
    assert doc["publish_messages_received_total"] == prom["hato_publish_messages_received_total"] == 5
    assert doc["retained_messages"] == prom["hato_retained_messages"] == 2
    assert doc["connections_accepted_total"] == prom["hato_connections_accepted_total"] == 1
    assert doc["publish_received_bytes_total"] == prom["hato_publish_received_bytes_total"] == 50
    assert doc["publish_dropped_total"]["queue_full"] == prom['hato_publish_dropped_total{reason="queue_full"}']
    admin_l = [l for l in doc["listeners"] if l["protocol"] == "admin"]
    assert len(admin_l) == 1 and admin_l[0]["accepted_total"] >= 2
    assert set(doc["load"]["publish_received"]) == {"1min", "5min", "15min"}


def test_openapi_document_matches_the_endpoints(broker_factory, tmp_path):
    """api-openapi: the served document is src/broker/admin_openapi.json, an OpenAPI 3.0
    document whose paths and methods are exactly the endpoints (docs/api.md's table), and
    every one it lists answers (neither 404 nor 405)."""
    b = admin_broker(broker_factory, tmp_path)
    api = Api(b.aport)
    assert api.login()[0] == 200
    status, _, doc = api.json("GET", "/api/v1/openapi.json")
    assert status == 200
    with open(os.path.join(ROOT, "src/broker/admin_openapi.json")) as f:
        assert doc == json.load(f)
    assert doc["openapi"].startswith("3.0.")
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert listed == {(m, p) for m, p, _ in ENDPOINTS}
    with open(os.path.join(ROOT, "docs/api.md")) as f:
        documented = set(re.findall(r"^\| `(GET|POST|PUT|DELETE) (/\S*)` \|", f.read(), re.M))
    assert documented == listed
    for p, ops in doc["paths"].items():
        for m, op in ops.items():
            open_ = op.get("security") == []
            assert open_ == (p in ("/healthz", "/api/v1/login")), p
    # Logout last: it ends the session.
    for method, path, _ in sorted(ENDPOINTS, key=lambda e: e[1] == "/api/v1/logout"):
        body = {"username": ADMIN_USER, "password": ADMIN_PASS} if path.endswith("/login") else None
        status, _, data = api.request(method, path, body)
        if "{" in path:  # a template: the literal name is unknown, but the route exists
            assert status == 404 and b"no such path" not in data, (method, path, status, data)
        else:
            assert status == 200, (method, path, status)


def test_tls_admin_listener_sets_secure(broker_factory, tmp_path, pki):
    """api-login: over TLS the cookie also carries Secure."""
    b = admin_broker(broker_factory, tmp_path,
                     listener_extra=f"certfile {pki['server.crt']}\nkeyfile {pki['server.key']}\n")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki["ca.crt"])
    api = Api(b.aport, ctx=ctx)
    status, r, _ = api.login()
    assert status == 200
    attrs = sorted(a.strip() for a in r.getheader("Set-Cookie").split(";")[1:])
    assert attrs == ["HttpOnly", "Path=/", "SameSite=Strict", "Secure"]
    assert api.json("GET", "/api/v1/config")[0] == 200


@pytest.mark.parametrize("conf,message", [
    ("listener {p} 0.0.0.0\nprotocol admin\nadmin_password_file {a}\n",
     "listener {p}: protocol admin on a non-loopback address needs TLS (certfile and keyfile)"),
    ("listener {p}\nbind_interface eth0\nprotocol admin\nadmin_password_file {a}\n",
     "listener {p}: protocol admin on a non-loopback bind_interface needs TLS"),
    ("listener {p}\nprotocol admin\n",
     "listener {p}: protocol admin needs admin_password_file"),
])
def test_refused_configurations(tmp_path, conf, message):
    """api-listener: a plain admin listener off loopback, or one without admin accounts,
    stops start-up with FILE:LINE: reason."""
    path = tmp_path / "bad.conf"
    p = free_port()
    path.write_text(conf.format(p=p, a=admin_file(tmp_path)))
    r = subprocess.run([HATO_BIN, "-c", str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert re.search(re.escape(f"{path}:1: " + message.format(p=p)), r.stderr), r.stderr


def test_bad_admin_password_file_stops_startup(tmp_path):
    """api-accounts: an admin_password_file that cannot be read or parsed stops start-up
    with its name (and line)."""
    bad = tmp_path / "admins.bad"
    bad.write_text("root-admin:not-a-hash\n")
    path = tmp_path / "bad.conf"
    path.write_text(f"listener {free_port()}\nprotocol admin\nadmin_password_file {bad}\n")
    r = subprocess.run([HATO_BIN, "-c", str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert f"admin_password_file {bad}:1:" in r.stderr, r.stderr


def test_accounts_reread_after_a_reload(broker_factory, tmp_path):
    """api-accounts: an account added with hato-passwd can log in after SIGHUP; a removed
    one cannot; a broken file on reload keeps the accounts loaded before."""
    b = admin_broker(broker_factory, tmp_path)
    admins = admin_file(tmp_path)
    hato_passwd("-b", admins, "second", "second-pass")
    assert Api(b.aport).login("second", "second-pass")[0] == 401  # not yet: no reload
    mark = b.mark()
    b.signal(signal.SIGHUP)
    b.wait_log(r"Reloaded config", start=mark)
    assert Api(b.aport).login("second", "second-pass")[0] == 200
    hato_passwd("-D", admins, "second")
    api = Api(b.aport)
    assert api.login()[0] == 200
    assert api.json("POST", "/api/v1/reload")[0] == 200
    assert Api(b.aport).login("second", "second-pass")[0] == 401
    good = admins.read_text()
    admins.write_text(good + "broken line without a hash\n")
    assert api.json("POST", "/api/v1/reload")[0] == 200  # the config itself is fine
    assert Api(b.aport).login()[0] == 200  # the accounts loaded before stay
    b.wait_log(r"admin_password_file .*:2: .*keeping the accounts loaded before")
