"""The Prometheus endpoint: a `protocol metrics` listener serving /metrics and /healthz.

/metrics is checked by Debian's `promtool check metrics` and scraped by a real
Prometheus server; the HTTP side (status codes, basic auth against the password
file, malformed heads) is driven over raw sockets and urllib. Everything here is
hato's own (Mosquitto has no metrics listener), so the module is hato_only.
"""

import base64
import json
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from authutil import mosquitto_passwd
from conftest import HATO_BIN, LoggedProcess, free_port
from mqttraw import RawClient, connect, connected_client, publish_ok
from tlspki import pki  # noqa: F401 (a fixture)

pytestmark = pytest.mark.hato_only("the metrics listener is hato's")

PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"
WAIT = 10

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def metrics_broker(broker_factory, extra="", listener_extra="", **kw):
    """A broker with its usual MQTT listener and a metrics listener; .mport is the latter."""
    mport = free_port()
    b = broker_factory(f"{extra}listener {mport}\nprotocol metrics\n{listener_extra}", **kw)
    b.mport = mport
    return b


def http(port, raw, timeout=WAIT, ctx=None):
    """Send raw request bytes; return everything the server sent until it closed."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if ctx:
        s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    try:
        s.sendall(raw)
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
        raise AssertionError(f"connection not closed after the response: {out[:200]!r}")
    finally:
        s.close()


def split_response(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return lines[0], status, headers, body


def get(port, path, auth=None, method="GET"):
    """urllib request; returns (status, headers, body), errors included."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if auth:
        req.add_header("Authorization",
                       "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def parse(text):
    """{(name, labels): value} of a text exposition body, and {name: type}."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            types[name] = typ
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        samples[(m.group(1), m.group(2) or "")] = float(m.group(3))
    return samples, types


def scrape(port, auth=None):
    status, headers, body = get(port, "/metrics", auth)
    assert status == 200, (status, body)
    return parse(body.decode())


def promtool_check(body):
    r = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                       timeout=60)
    return r.returncode, (r.stdout + r.stderr).decode()


def test_metrics_pass_promtool_check(broker_factory):
    b = metrics_broker(broker_factory)
    # Some traffic first, so that no family is checked only while empty.
    c = connected_client(b.port, "promtool-client")
    publish_ok(c, "t/a", b"x", qos=1)
    status, headers, body = get(b.mport, "/metrics")
    c.close()
    assert status == 200
    assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert int(headers["Content-Length"]) == len(body)
    rc, out = promtool_check(body)
    assert rc == 0 and out.strip() == "", f"promtool check metrics ({rc}):\n{out}"
    # Every family has HELP and TYPE, and every sample belongs to a declared family.
    text = body.decode()
    helps = set(re.findall(r"^# HELP (\S+) ", text, re.M))
    samples, types = parse(text)
    assert helps == set(types), helps ^ set(types)
    for name, _ in samples:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or (base in types and types[base] == "histogram"), name
        assert name.startswith("hato_"), name


def test_promtool_rejects_a_broken_body():
    """The check above can fail: promtool refuses a family without TYPE and a bad sample."""
    rc, _ = promtool_check(b"hato_x{le=} 1\n")
    assert rc != 0


def test_metric_families_and_types(broker_factory):
    b = metrics_broker(broker_factory)
    samples, types = scrape(b.mport)
    expect = {
        "hato_clients_connected": "gauge",
        "hato_clients_maximum": "gauge",
        "hato_messages_received_total": "counter",
        "hato_messages_sent_total": "counter",
        "hato_publish_messages_received_total": "counter",
        "hato_publish_dropped_total": "counter",
        "hato_store_commit_seconds": "histogram",
        "hato_delivery_queue_depth": "histogram",
        "hato_listener_connections": "gauge",
        "hato_worker_clients": "gauge",
        "hato_uptime_seconds": "gauge",
        "hato_heap_bytes": "gauge",
        "hato_retained_messages": "gauge",
        "hato_subscriptions": "gauge",
        "hato_load_messages_received": "gauge",
        "hato_build_info": "gauge",
    }
    for name, typ in expect.items():
        assert types.get(name) == typ, (name, types.get(name))
    for reason in ("output_full", "queue_full", "qos0_offline", "expired", "too_large", "acl"):
        assert ("hato_publish_dropped_total", f'{{reason="{reason}"}}') in samples
    for window in ("1min", "5min", "15min"):
        assert ("hato_load_messages_received", f'{{window="{window}"}}') in samples
    # Histograms: cumulative buckets ending in +Inf == _count.
    for h in ("hato_store_commit_seconds", "hato_delivery_queue_depth"):
        buckets = [(k[1], v) for k, v in samples.items() if k[0] == h + "_bucket"]
        assert buckets and buckets[-1][0] == '{le="+Inf"}', buckets
        values = [v for _, v in buckets]
        assert values == sorted(values), buckets
        assert buckets[-1][1] == samples[(h + "_count", "")]
        assert (h + "_sum", "") in samples
    # One series per worker thread and per listener (both listeners, labelled).
    workers = [k for k in samples if k[0] == "hato_worker_clients"]
    assert len(workers) >= 1
    listeners = {k[1] for k in samples if k[0] == "hato_listener_connections"}
    assert any('protocol="mqtt"' in l and str(b.port) in l for l in listeners), listeners
    assert any('protocol="metrics"' in l and str(b.mport) in l for l in listeners), listeners


def test_counters_move_after_publishing(broker_factory):
    b = metrics_broker(broker_factory)
    before, _ = scrape(b.mport)
    sub = connected_client(b.port, "metrics-sub")
    from mqttraw import recv_publish, subscribe_ok
    subscribe_ok(sub, 1, [("m/#", 1)])
    pub = connected_client(b.port, "metrics-pub")
    for i in range(5):
        publish_ok(pub, f"m/{i}", b"payload", qos=1, pid=i + 1)
    for _ in range(5):
        recv_publish(sub)
    after, _ = scrape(b.mport)
    key = ("hato_publish_messages_received_total", "")
    assert after[key] >= before[key] + 5, (before[key], after[key])
    key = ("hato_publish_messages_sent_total", "")
    assert after[key] >= before[key] + 5, (before[key], after[key])
    assert after[("hato_clients_connected", "")] == 2
    mqtt_conns = [v for k, v in after.items()
                  if k[0] == "hato_listener_connections" and 'protocol="mqtt"' in k[1]]
    assert mqtt_conns == [2], mqtt_conns
    sub.close()
    pub.close()


def test_healthz_ok(broker_factory):
    b = metrics_broker(broker_factory)
    status, headers, body = get(b.mport, "/healthz")
    assert (status, body) == (200, b"ok\n")
    status, headers, body = get(b.mport, "/healthz", method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == "3"


def test_other_paths_404_other_methods_405(broker_factory):
    b = metrics_broker(broker_factory)
    assert get(b.mport, "/")[0] == 404
    assert get(b.mport, "/metrics/x")[0] == 404
    status, headers, _ = get(b.mport, "/metrics", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    assert get(b.mport, "/metrics", method="DELETE")[0] == 405
    # A query string does not change the path.
    assert get(b.mport, "/metrics?x=1")[0] == 200


@pytest.mark.parametrize("raw,status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /metrics HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host (RFC 9112 3.2)
    (b"GET /metrics HTTP/1.1\nHost: x\n\n", 400),  # bare LF
    (b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 9000 + b"\r\n\r\n", 431),
])
def test_malformed_request_answered_and_closed(broker_factory, raw, status):
    b = metrics_broker(broker_factory)
    line, got, headers, _ = split_response(http(b.mport, raw))
    assert got == status, line
    assert headers["connection"] == "close"
    # The broker is still serving.
    assert get(b.mport, "/healthz")[0] == 200


def test_request_in_pieces_and_http10(broker_factory):
    b = metrics_broker(broker_factory)
    s = socket.create_connection(("127.0.0.1", b.mport), timeout=WAIT)
    s.sendall(b"GET /heal")
    # The first piece alone is no request: nothing comes back until the rest arrives.
    s.settimeout(0.3)
    with pytest.raises(socket.timeout):
        s.recv(1)
    s.settimeout(WAIT)
    s.sendall(b"thz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    out = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        out += chunk
    s.close()
    assert split_response(out)[1] == 200 and out.endswith(b"\r\n\r\nok\n")
    _, status, _, body = split_response(http(b.mport, b"GET /healthz HTTP/1.0\r\n\r\n"))
    assert status == 200 and body == b"ok\n"


def test_metrics_listener_does_not_speak_mqtt(broker_factory):
    """An MQTT CONNECT to the metrics port gets an HTTP 400 and a close, never a CONNACK."""
    b = metrics_broker(broker_factory)
    out = http(b.mport, connect("not-mqtt-here"))
    assert out.startswith(b"HTTP/1.1 400 "), out[:40]
    assert b.wait_log(r"Metrics request from 127\.0\.0\.1:\d+ on port %d refused: 400" % b.mport)
    # And the client id never became a session.
    samples, _ = scrape(b.mport)
    assert samples[("hato_clients_connected", "")] == 0


def listening_addresses(port):
    """Local addresses of the sockets in LISTEN state on this TCP port (from /proc/net)."""
    found = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(name).read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            f = line.split()
            addr, p = f[1].split(":")
            if int(p, 16) == port and f[3] == "0A":
                found.append(addr)
    return found


def test_default_bind_is_loopback(broker_factory):
    b = metrics_broker(broker_factory)
    assert listening_addresses(b.mport) == ["0100007F"]  # 127.0.0.1, and nothing else


def test_explicit_address_binds_there(broker_factory):
    mport = free_port()
    broker_factory(f"listener {mport} 0.0.0.0\nprotocol metrics\n")
    assert listening_addresses(mport) == ["00000000"]
    assert get(mport, "/healthz")[0] == 200


def pw_file(tmp_path):
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "prom", "scrape-secret")
    return pw


def test_basic_auth(broker_factory, tmp_path):
    pw = pw_file(tmp_path)
    b = metrics_broker(broker_factory, extra=f"password_file {pw}\n",
                       listener_extra="metrics_auth true\n")
    status, headers, _ = get(b.mport, "/metrics")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith('Basic realm="hato"')
    assert get(b.mport, "/metrics", auth=("prom", "bad-guess-123"))[0] == 401
    assert get(b.mport, "/metrics", auth=("nobody", "scrape-secret"))[0] == 401
    assert get(b.mport, "/healthz")[0] == 401
    b.wait_log(r"Metrics request from 127\.0\.0\.1:\d+ on port \d+ refused \(user 'prom'\): "
               r"wrong user or password")
    b.wait_log(r"refused \(user 'nobody'\): wrong user or password")
    b.wait_log(r"refused \(user '\?'\): no credentials")
    assert "bad-guess-123" not in b.log  # passwords never in the log
    _, status, _, _ = split_response(http(
        b.mport, b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic !!!!\r\n\r\n"))
    assert status == 401
    status, _, body = get(b.mport, "/metrics", auth=("prom", "scrape-secret"))
    assert status == 200 and b"hato_clients_connected" in body
    assert get(b.mport, "/healthz", auth=("prom", "scrape-secret"))[0] == 200
    # The MQTT listener is unchanged: the password file is the same one.
    c = RawClient(b.port)
    ack = c.connect("mqtt-user", username="prom", password="scrape-secret")
    assert ack.reason == 0
    c.close()


@pytest.mark.parametrize("conf,message", [
    ("listener {p}\nmetrics_auth true\n", "metrics_auth applies to metrics listeners only"),
    ("listener {p}\nprotocol metrics\nmetrics_auth true\n", "metrics_auth true needs a password_file"),
    ("listener {p}\nprotocol metric\n", "protocol"),
])
def test_config_errors(tmp_path, conf, message):
    path = tmp_path / "bad.conf"
    path.write_text(conf.format(p=free_port()))
    r = subprocess.run([HATO_BIN, "-c", str(path)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert re.search(re.escape(str(path)) + r":\d+: .*" + re.escape(message), r.stderr), r.stderr


def test_metrics_over_tls(broker_factory, pki):
    b = metrics_broker(broker_factory, listener_extra=(
        f"certfile {pki['server.crt']}\nkeyfile {pki['server.key']}\n"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki["ca.crt"])
    out = http(b.mport, b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", ctx=ctx)
    _, status, headers, body = split_response(out)
    assert status == 200 and int(headers["content-length"]) == len(body)
    rc, text = promtool_check(body)
    assert rc == 0, text
    # Plain HTTP to the TLS port gets no metrics.
    try:
        out = http(b.mport, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    except (ConnectionError, OSError):
        out = b""
    assert b"hato_" not in out


def prometheus_query(port, query):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())["data"]["result"]


def test_scraped_by_prometheus(broker_factory, tmp_path):
    """A real Prometheus server scrapes hato (with basic auth) until up == 1 and a hato
    metric is stored."""
    pw = pw_file(tmp_path)
    b = metrics_broker(broker_factory, extra=f"password_file {pw}\n",
                       listener_extra="metrics_auth true\n")
    pport = free_port()
    (tmp_path / "pw").write_text("scrape-secret")
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: hato\n"
        f"    basic_auth:\n      username: prom\n      password_file: {tmp_path / 'pw'}\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{b.mport}']\n")
    prom = LoggedProcess([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                          f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                          f"--web.listen-address=127.0.0.1:{pport}"])
    try:
        prom.wait_log(r"Server is ready to receive web requests", timeout=30)
        deadline = time.monotonic() + 30
        up = metric = None
        while time.monotonic() < deadline:
            up = prometheus_query(pport, 'up{job="hato"}')
            metric = prometheus_query(pport, 'hato_build_info{job="hato"}')
            if up and up[0]["value"][1] == "1" and metric:
                break
            time.sleep(0.2)  # poll the query API; the scrape happens in Prometheus
        assert up and up[0]["value"][1] == "1", (up, prom.log[-2000:])
        assert metric and metric[0]["metric"]["version"], metric
    finally:
        prom.terminate()


def test_reload_of_the_password_file_applies_to_the_next_request(broker_factory, tmp_path):
    """Verified credentials are remembered per worker (a scrape every few seconds must not
    cost a hash each time) only until the password file is reloaded."""
    import signal
    pw = pw_file(tmp_path)
    b = metrics_broker(broker_factory, extra=f"password_file {pw}\n",
                       listener_extra="metrics_auth true\n")
    for _ in range(6):  # on every worker, most likely: each remembers its last success
        assert get(b.mport, "/metrics", auth=("prom", "scrape-secret"))[0] == 200
    mosquitto_passwd("-b", pw, "prom", "new-secret")
    mark = b.mark()
    b.signal(signal.SIGHUP)
    b.wait_log(r"Reloaded password and ACL files", start=mark)
    for _ in range(6):
        assert get(b.mport, "/metrics", auth=("prom", "scrape-secret"))[0] == 401
    assert get(b.mport, "/metrics", auth=("prom", "new-secret"))[0] == 200
