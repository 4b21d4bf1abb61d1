"""The WebSocket opening handshake and http_dir, byte for byte (RFC 6455
section 4, RFC 9110/9112 for the HTTP around it): what a WebSocket listener
answers to each kind of request, and that a bad one costs only its sender.
"""

import os
import socket

import pytest

from conftest import free_port
from mqttraw import connected_client, publish_ok, recv_publish, subscribe_ok
from wsraw import OP_BINARY, WsMqtt, WsRaw, accept_for, frame
import mqttraw


def ws_broker(broker_factory, extra="", listener_extra=""):
    port, tcp = free_port(), free_port()
    b = broker_factory(f"listener {tcp} 127.0.0.1\nlistener {port} 127.0.0.1\n"
                       f"protocol websockets\n{listener_extra}{extra}", listener=False)
    b.ws_port, b.port = port, tcp
    return b


def refused(b, data, status, timeout=5):
    ws = WsRaw(b.ws_port)
    try:
        ws.send(data)
        r = ws.read_http(timeout)
        assert r.status == status, r.status_line
        ws.expect_eof(timeout)
        return r
    finally:
        ws.close()


def test_rfc6455_4_2_2_accept_key_from_the_rfc_example(broker_factory):
    """RFC6455-4.2.2: the accept value of the RFC's sample key, and the subprotocol echoed."""
    b = ws_broker(broker_factory)
    ws = WsRaw(b.ws_port)
    ws.send(ws.request_bytes(key="dGhlIHNhbXBsZSBub25jZQ=="))
    r = ws.read_http()
    assert r.status == 101
    assert r.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert r.header("upgrade").lower() == "websocket"
    assert "upgrade" in r.header("connection").lower()
    assert r.header("sec-websocket-protocol") == "mqtt"
    ws.close()


@pytest.mark.parametrize("offered,chosen", [("mqtt", "mqtt"), ("mqttv3.1", "mqttv3.1"),
                                            ("chat, mqtt", "mqtt")])
def test_subprotocol_answered_with_the_one_chosen(broker_factory, offered, chosen):
    """MQTT-6.0.0-3/4: the server picks mqtt (or mqttv3.1) from the client's list."""
    b = ws_broker(broker_factory)
    ws = WsRaw(b.ws_port)
    r = ws.upgrade(protocol=offered)
    assert r.header("sec-websocket-protocol") == chosen
    ws.close()


@pytest.mark.hato_only("libwebsockets accepts an upgrade without an MQTT subprotocol offer")
def test_upgrade_offering_no_mqtt_subprotocol_is_refused(broker_factory):
    b = ws_broker(broker_factory)
    ws = WsRaw(b.ws_port)
    refused(b, ws.request_bytes(protocol="chat"), 400)


@pytest.mark.hato_only("libwebsockets in mosquitto 2.0.11 answers with other statuses or keeps the connection open; hato answers as RFC 6455 and issue 12 ask")
def test_rfc6455_4_2_1_missing_key_is_400(broker_factory):
    """RFC6455-4.2.1: no Sec-WebSocket-Key, or one that is not 16 bytes of base64: 400."""
    b = ws_broker(broker_factory)
    ws = WsRaw(b.ws_port)
    refused(b, ws.request_bytes(omit=("Sec-WebSocket-Key",)), 400)
    refused(b, ws.request_bytes(key="c2hvcnQ="), 400)
    b.wait_log(r"closed: HTTP 400 Bad Request: no valid Sec-WebSocket-Key")


@pytest.mark.hato_only("libwebsockets in mosquitto 2.0.11 answers with other statuses or keeps the connection open; hato answers as RFC 6455 and issue 12 ask")
def test_rfc6455_4_4_other_version_is_426_with_13(broker_factory):
    """RFC6455-4.4: a version other than 13 gets 426 and Sec-WebSocket-Version: 13."""
    b = ws_broker(broker_factory)
    ws = WsRaw(b.ws_port)
    r = refused(b, ws.request_bytes(version="12"), 426)
    assert r.header("sec-websocket-version") == "13"


@pytest.mark.hato_only("libwebsockets in mosquitto 2.0.11 answers with other statuses or keeps the connection open; hato answers as RFC 6455 and issue 12 ask")
def test_origin_not_allowed_is_403(broker_factory):
    """websockets_origin: another Origin (or none) gets 403; a listed one upgrades."""
    b = ws_broker(broker_factory, listener_extra="websockets_origin http://good.example\n")
    ws = WsRaw(b.ws_port)
    refused(b, ws.request_bytes(extra=[("Origin", "http://evil.example")]), 403)
    refused(b, ws.request_bytes(), 403)
    b.wait_log(r"HTTP 403 Forbidden: origin 'http://evil.example' not allowed")
    ok = WsRaw(b.ws_port)
    ok.upgrade(extra=[("Origin", "http://good.example")])
    ok.close()


@pytest.mark.hato_only("libwebsockets answers other methods differently")
def test_post_is_405(broker_factory):
    b = ws_broker(broker_factory)
    r = refused(b, b"POST /mqtt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405)
    assert "GET" in r.header("allow")


@pytest.mark.hato_only("the limit and status follow websockets_headers_size in hato")
def test_head_over_websockets_headers_size_is_431(broker_factory):
    b = ws_broker(broker_factory, extra="websockets_headers_size 1024\n")
    ws = WsRaw(b.ws_port)
    refused(b, ws.request_bytes(extra=[("X-Padding", "a" * 2000)]), 431)


@pytest.mark.hato_only("strict HTTP parsing")
@pytest.mark.parametrize("data", [
    b"GET /mqtt HTTP/1.1\nHost: x\n\n",                     # bare LF
    b"GET  /mqtt HTTP/1.1\r\nHost: x\r\n\r\n",              # two spaces
    b"GET /mqtt HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",    # obsolete folding
    b"GET /mqtt HTTP/1.1\r\n\r\n",                          # no Host
    b"GET http://x/mqtt HTTP/1.1\r\nHost: x\r\n\r\n",       # absolute form
    b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00",        # MQTT on a WebSocket port
])
def test_malformed_request_is_400(broker_factory, data):
    b = ws_broker(broker_factory)
    refused(b, data, 400)


@pytest.mark.hato_only("version check")
def test_http_2_is_505(broker_factory):
    b = ws_broker(broker_factory)
    refused(b, b"GET /mqtt HTTP/2.0\r\nHost: x\r\n\r\n", 505)


@pytest.mark.hato_only("libwebsockets in mosquitto 2.0.11 answers with other statuses or keeps the connection open; hato answers as RFC 6455 and issue 12 ask")
def test_plain_get_without_http_dir_is_404(broker_factory):
    b = ws_broker(broker_factory)
    refused(b, b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n", 404)


def test_malformed_handshake_harms_no_one_else(broker_factory):
    """A bad request is answered and closed; a client connected at the same time goes on."""
    b = ws_broker(broker_factory)
    sub = WsMqtt(b.ws_port)
    sub.send(mqttraw.connect("bystander"))
    sub.expect(mqttraw.CONNACK)
    sub.send(mqttraw.subscribe(1, [("t/#", 0)]))
    sub.expect(mqttraw.SUBACK)
    for junk in (b"\x00\xff" * 50, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 100 + b"\r\n"):
        s = socket.create_connection(("127.0.0.1", b.ws_port), timeout=5)
        s.sendall(junk)
        s.settimeout(5)
        while s.recv(4096):
            pass
        s.close()
    with connected_client(b, "pub") as p:
        publish_ok(p, "t/1", b"still here")
    got = sub.expect(mqttraw.PUBLISH)
    assert got.payload == b"still here"
    sub.close()


@pytest.mark.hato_only("handshake deadline is connect_timeout")
def test_slowloris_on_the_http_head_is_closed_by_connect_timeout(broker_factory):
    b = ws_broker(broker_factory, extra="connect_timeout 1\n")
    s = socket.create_connection(("127.0.0.1", b.ws_port), timeout=10)
    s.sendall(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n")
    s.settimeout(10)
    assert s.recv(100) == b""  # closed before the head was complete
    s.close()
    b.wait_log(r"WebSocket handshake not finished in time")


# ---- http_dir -----------------------------------------------------------


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "www"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<h1>hato</h1>")
    (root / "js" / "app.js").write_text("console.log(1)")
    (root / "style.css").write_text("h1{}")
    (root / "data.json").write_text("{}")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    (root / "logo.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", root / "link.txt")
    return root


def get(b, path, method="GET"):
    ws = WsRaw(b.ws_port)
    try:
        ws.send(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        r = ws.read_http(head_only=method == "HEAD")
        if method == "GET" and r.status == 200:
            assert len(r.body) == int(r.header("content-length"))
        ws.expect_eof()
        return r
    finally:
        ws.close()


@pytest.mark.hato_only("libwebsockets in mosquitto 2.0.11 answers with other statuses or keeps the connection open; hato answers as RFC 6455 and issue 12 ask")
@pytest.mark.parametrize("path,ctype", [
    ("/", "text/html"), ("/index.html", "text/html"), ("/js/app.js", "text/javascript"),
    ("/style.css", "text/css"), ("/data.json", "application/json"), ("/logo.png", "image/png"),
    ("/logo.svg", "image/svg+xml"), ("/index.html?v=3", "text/html"),
])
def test_http_dir_serves_files_with_their_type(broker_factory, site, path, ctype):
    b = ws_broker(broker_factory, listener_extra=f"http_dir {site}\n")
    r = get(b, path)
    assert r.status == 200 and r.header("content-type").startswith(ctype)
    name = "index.html" if path in ("/", "/index.html?v=3") else path.lstrip("/")
    assert r.body == (site / name).read_bytes()


@pytest.mark.hato_only("libwebsockets in mosquitto 2.0.11 answers with other statuses or keeps the connection open; hato answers as RFC 6455 and issue 12 ask")
def test_http_dir_head_has_no_body(broker_factory, site):
    b = ws_broker(broker_factory, listener_extra=f"http_dir {site}\n")
    r = get(b, "/index.html", "HEAD")
    assert r.status == 200 and int(r.header("content-length")) == 13 and r.body == b""


@pytest.mark.hato_only("libwebsockets in mosquitto 2.0.11 answers with other statuses or keeps the connection open; hato answers as RFC 6455 and issue 12 ask")
@pytest.mark.parametrize("path,status", [
    ("/../secret.txt", 403), ("/%2e%2e/secret.txt", 403), ("/js/../../secret.txt", 403),
    ("/link.txt", 403), ("/%2Fetc%2Fpasswd", 400), ("/a%00b", 400), ("/missing.html", 404),
])
def test_http_dir_never_serves_outside_it(broker_factory, site, path, status):
    """No path escape: dot segments, encoded ones, a symlink out of http_dir."""
    b = ws_broker(broker_factory, listener_extra=f"http_dir {site}\n")
    r = get(b, path)
    assert r.status == status and b"outside" not in r.body


@pytest.mark.hato_only("libwebsockets in mosquitto 2.0.11 answers with other statuses or keeps the connection open; hato answers as RFC 6455 and issue 12 ask")
def test_http_dir_other_methods_are_405(broker_factory, site):
    b = ws_broker(broker_factory, listener_extra=f"http_dir {site}\n")
    r = refused(b, b"DELETE /index.html HTTP/1.1\r\nHost: x\r\n\r\n", 405)
    assert "GET" in r.header("allow")


@pytest.mark.hato_only("libwebsockets in mosquitto 2.0.11 answers with other statuses or keeps the connection open; hato answers as RFC 6455 and issue 12 ask")
def test_http_dir_and_mqtt_on_one_port(broker_factory, site):
    """The same listener serves the page and the page's MQTT connection."""
    b = ws_broker(broker_factory, listener_extra=f"http_dir {site}\n")
    assert get(b, "/").status == 200
    c = WsMqtt(b.ws_port)
    c.send(mqttraw.connect("page"))
    assert c.expect(mqttraw.CONNACK).reason == 0
    c.close()


# ---- X-Forwarded-For ------------------------------------------------------


@pytest.mark.hato_only("websockets_trusted_proxy is hato's own")
def test_x_forwarded_for_only_from_a_trusted_proxy(broker_factory):
    b = ws_broker(broker_factory, listener_extra="websockets_trusted_proxy 127.0.0.2\n"
                                                 "websockets_trusted_proxy 10.0.0.0/8\n")
    # From 127.0.0.2 (trusted): the rightmost untrusted address names the client.
    ws = WsRaw(b.ws_port, source="127.0.0.2")
    ws.upgrade(extra=[("X-Forwarded-For", "203.0.113.9, 198.51.100.7, 10.1.2.3")])
    ws.send(frame(OP_BINARY, mqttraw.connect("proxied")))
    b.wait_log(r"is client 198\.51\.100\.7:0 \(address from the X-Forwarded-For header\)")
    b.wait_log(r"New client connected from 198\.51\.100\.7:0 as proxied")
    ws.close()
    # From 127.0.0.1 (not trusted): the header is ignored.
    ws = WsRaw(b.ws_port)
    ws.upgrade(extra=[("X-Forwarded-For", "203.0.113.9")])
    ws.send(frame(OP_BINARY, mqttraw.connect("direct")))
    b.wait_log(r"New client connected from 127\.0\.0\.1:\d+ as direct")
    ws.close()
    assert "203.0.113.9" not in b.log


# ---- logging ------------------------------------------------------------


@pytest.mark.hato_only("hato's own upgrade message")
@pytest.mark.parametrize("extra,logged", [("", False), ("websockets_log_level 1\n", True),
                                          ("log_type notice\nlog_type websockets\n", True)])
def test_upgrades_logged_with_the_websockets_log_type(broker_factory, extra, logged):
    """websockets_log_level (any level) and log_type websockets log each upgrade; the
    default log types do not."""
    b = ws_broker(broker_factory, extra=extra)
    ws = WsMqtt(b.ws_port)
    ws.send(mqttraw.connect("logged"))
    ws.expect(mqttraw.CONNACK)
    ws.close()
    b.wait_log(r"Client logged .* disconnected")
    assert ("WebSocket connection from 127.0.0.1" in b.log) == logged
