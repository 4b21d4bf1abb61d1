"""The admin API from a test: a broker with an admin listener, and a client
that logs in and keeps its session cookie and CSRF token (docs/api.md)."""

import http.client
import json
import re

from authutil import hato_passwd
from conftest import free_port

WAIT = 10
ADMIN_USER, ADMIN_PASS = "root-admin", "admin-secret-1"


def admin_file(tmp_path):
    path = tmp_path / "admins"
    if not path.exists():
        hato_passwd("-c", "-b", path, ADMIN_USER, ADMIN_PASS)
    return path


def admin_broker(broker_factory, tmp_path, extra="", listener_extra="", **kw):
    """A broker with its MQTT listener and an admin listener (.aport)."""
    aport = free_port()
    b = broker_factory(f"admin_password_file {admin_file(tmp_path)}\nauth_fail_delay 300\n"
                       f"{extra}listener {aport}\nprotocol admin\n{listener_extra}", **kw)
    b.aport = aport
    return b


class Api:
    """One admin client: keeps the session cookie and CSRF token of its login."""

    def __init__(self, port, ctx=None):
        self.port, self.ctx = port, ctx
        self.cookie = self.csrf = None

    def request(self, method, path, body=None, headers=None, csrf=True, cookie=True):
        if self.ctx:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=WAIT,
                                               context=self.ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        h = dict(headers or {})
        if cookie and self.cookie:
            h["Cookie"] = f"hato_session={self.cookie}"
        if csrf and self.csrf and method not in ("GET", "HEAD"):
            h["X-CSRF-Token"] = self.csrf
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            h["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return r.status, r, data
        finally:
            conn.close()

    def json(self, method, path, body=None, **kw):
        status, r, data = self.request(method, path, body, **kw)
        assert r.getheader("Content-Type") == "application/json", (status, data)
        return status, r, json.loads(data)

    def login(self, user=ADMIN_USER, password=ADMIN_PASS):
        status, r, doc = self.json("POST", "/api/v1/login", {"username": user, "password": password})
        if status == 200:
            m = re.match(r"hato_session=([0-9a-f]{64});", r.getheader("Set-Cookie"))
            assert m, r.getheader("Set-Cookie")
            self.cookie, self.csrf = m.group(1), doc["csrf"]
        return status, r, doc
