"""Logging as Mosquitto's directives describe it (issue 13): log_dest (several at once,
file, syslog, topic), log_type, log_timestamp(_format), connection_messages, and
hato's log_format json; failed logins logged at warning with their reason.

Syslog: syslog(3) writes to /dev/log. When /dev/log does not exist, the test binds a
datagram socket there for its duration (and removes it); when it exists and the tests
run as root, the broker runs in a private mount namespace (unshare -m) where the test's
socket is bind-mounted over /dev/log; otherwise the syslog test is skipped.
"""

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import tempfile
import time

import pytest

from authutil import FAST, mosquitto_passwd, write
from conftest import HATO_BIN, SANITIZER_MARKS, LoggedProcess, free_port
from mqttraw import (CONNACK, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK, UNSUBACK, RawClient,
                     PINGRESP, ack, closed_by_broker, connected_client, pingreq, publish_ok,
                     recv_publish, subscribe, subscribe_ok, unsubscribe)
from tlspki import TLSClient, pki  # noqa: F401 (pki is a fixture)

WAIT = 10
EPOCH_PREFIX = r"^\d{10,}: "


def wait_file(path, pattern, timeout=WAIT):
    """Poll a file (bounded by a deadline) until a line matches; return that line."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while True:
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if rx.search(line):
                        return line.rstrip("\n")
        if time.monotonic() > deadline:
            text = open(path).read() if os.path.exists(path) else "(no file)"
            raise AssertionError(f"no line /{pattern}/ in {path} within {timeout}s:\n{text}")
        time.sleep(0.02)


def client_session(broker, cid, **kw):
    """Connect, then disconnect cleanly; the broker logs both."""
    c = connected_client(broker, cid, **kw)
    c.close()


def json_lines(text):
    """Every line of a log_format json log parsed; a line that is not JSON fails."""
    out = []
    for line in text.splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out


# ---- destinations ----------------------------------------------------------------------------


@pytest.mark.hato_only("stdout and stderr are one pipe in the fixture: counts hato's lines")
def test_several_destinations_at_once(broker_factory, tmp_path):
    """log_dest stderr, stdout and file together: every line goes to each of them."""
    log = tmp_path / "hato.log"
    b = broker_factory(f"log_dest stderr\nlog_dest stdout\nlog_dest file {log}\n")
    client_session(b, "everywhere")
    b.wait_log(r"Client everywhere .* disconnected")
    line = wait_file(log, r"New client connected from 127\.0\.0\.1:\d+ as everywhere ")
    assert re.match(EPOCH_PREFIX, line)
    # The fixture reads stdout and stderr through one pipe: each line twice.
    assert b.log.count(line) == 2, b.log


@pytest.mark.hato_only("Mosquitto 2.0 creates its log file 0600; the issue asks for 0640")
def test_log_file_created_with_mode_0640(broker_factory, tmp_path):
    """The log file is created with mode 0640 (not world-readable: it names users and
    addresses), whatever the umask."""
    log = tmp_path / "new.log"
    broker_factory(f"log_dest stderr\nlog_dest file {log}\n" + FAST)
    wait_file(log, r"version \S+ running")
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o640


@pytest.mark.hato_only("Mosquitto 2.0 reopens its log file on SIGHUP too, but logs no reload line")
def test_log_file_reopened_on_sighup_after_rename(broker_factory, tmp_path):
    """logrotate renames the file, then postrotate sends SIGHUP: the broker writes to a
    new file by the configured name, and nothing more to the renamed one."""
    log = tmp_path / "hato.log"
    b = broker_factory(f"log_dest stderr\nlog_dest file {log}\n")
    client_session(b, "before-rotate")
    wait_file(log, r"Client before-rotate .* disconnected")
    rotated = tmp_path / "hato.log.1"
    os.rename(log, rotated)
    mark = b.mark()
    b.signal(signal.SIGHUP)
    b.wait_log(r"Reloading", start=mark)
    client_session(b, "after-rotate")
    wait_file(log, r"Client after-rotate .* disconnected")
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o640
    assert "after-rotate" not in rotated.read_text()
    assert "before-rotate" not in log.read_text()


@pytest.mark.hato_only("runs hato's binary")
def test_log_dest_none_and_bad_file_refused(tmp_path):
    """An unopenable log file stops start-up with the reason; log_dest dlt (GENIVI DLT,
    which hato has no client for) is refused with file:line."""
    conf = write(tmp_path / "bad.conf", f"listener {free_port()} 127.0.0.1\n"
                                        f"log_dest file {tmp_path}/no/such/dir/h.log\n")
    r = subprocess.run([HATO_BIN, "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "cannot open log file" in r.stderr and "No such file or directory" in r.stderr
    conf = write(tmp_path / "dlt.conf", "log_dest dlt\n")
    r = subprocess.run([HATO_BIN, "-c", str(conf), "--test-config"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 1
    assert f"{conf}:1: log_dest: dlt" in r.stderr and "not supported" in r.stderr


# ---- syslog ----------------------------------------------------------------------------------


class SyslogSink:
    """A Unix datagram socket that receives what syslog(3) sends."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.got = []

    def wait(self, pattern, timeout=WAIT):
        rx = re.compile(pattern)
        for m in self.got:
            if rx.search(m):
                return m
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no syslog message /{pattern}/; got:\n" + "\n".join(self.got))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            m = data.decode("utf-8", "replace")
            self.got.append(m)
            if rx.search(m):
                return m

    def close(self):
        self.sock.close()
        os.unlink(self.path)


@pytest.fixture
def syslog_broker(tmp_path):
    """start(config) -> (broker process, SyslogSink) with the broker's /dev/log being
    the sink. See the module's docstring for how."""
    started, locks = [], []

    def start(config):
        port = free_port()
        conf = write(tmp_path / "syslog.conf", f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                                               "log_dest stderr\nlog_dest syslog\n" + config)
        # One test at a time decides about /dev/log and may own it (pytest -n runs
        # tests in parallel): whether it exists cannot change under us.
        lock = open(os.path.join(tempfile.gettempdir(), "hato-test-dev-log.lock"), "w")
        locks.append(lock)
        deadline = time.monotonic() + 60
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail("another test held /dev/log for 60 s")
                time.sleep(0.05)
        if not os.path.exists("/dev/log"):
            try:
                sink = SyslogSink("/dev/log")
            except OSError as e:
                pytest.skip(f"cannot bind /dev/log: {e}")
            cmd = [HATO_BIN, "-c", str(conf)]
        elif os.geteuid() == 0 and shutil.which("unshare"):
            sink = SyslogSink(str(tmp_path / "devlog"))
            cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount --bind "$0" /dev/log && exec "$@"', sink.path, HATO_BIN, "-c", str(conf)]
        else:
            pytest.skip("/dev/log exists and is not ours to replace (not root)")
        p = LoggedProcess(cmd)
        p.port = port
        p.host = "127.0.0.1"
        started.append((p, sink))
        p.wait_log(r"version \S+ running", timeout=15)
        return p, sink

    yield start
    for p, sink in started:
        rc, _ = p.terminate()
        sink.close()
        assert rc == 0 and not any(m in p.log for m in SANITIZER_MARKS), p.log
    for lock in locks:
        lock.close()  # releases the flock


@pytest.mark.hato_only("hato's syslog ident and reasons")
@pytest.mark.parametrize("facility,base", [(None, 3 * 8), (3, 19 * 8), (7, 23 * 8)])
def test_syslog_with_facility_and_priorities(syslog_broker, tmp_path, facility, base):
    """log_dest syslog: openlog with facility daemon by default, log_facility N is
    LOG_LOCALN; notices are priority 5, warnings 4 (RFC 5424 PRI = facility*8 + severity);
    no timestamp of ours in the message (syslog stamps it)."""
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    extra = f"log_facility {facility}\n" if facility is not None else ""
    b, sink = syslog_broker(extra + f"password_file {pw}\n" + FAST)
    client_session(b, "via-syslog", username="alice", password="right")
    m = sink.wait(r"New client connected from 127\.0\.0\.1:\d+ as via-syslog ")
    assert m.startswith(f"<{base + 5}>"), m
    assert re.search(r"hato\[\d+\]: New client", m), m
    c = RawClient(b)
    assert c.connect("intruder", username="alice", password="wrong").reason == 5
    c.close()
    m = sink.wait(r"Client intruder .*refused: bad user name or password")
    assert m.startswith(f"<{base + 4}>"), m


# ---- what is logged, and how -----------------------------------------------------------------


def test_default_timestamp_is_seconds_since_epoch(broker):
    """Without log_timestamp_format a line starts with the seconds since the epoch."""
    client_session(broker, "stamped")
    line = broker.wait_log(r"New client connected from .* as stamped")
    m = re.match(r"^(\d+): New client", line)
    assert m, line
    assert abs(int(m.group(1)) - time.time()) < 60


def test_log_timestamp_format_is_strftime(broker_factory):
    """log_timestamp_format takes strftime(3) conversions, as Mosquitto's."""
    b = broker_factory("log_timestamp_format %Y-%m-%dT%H:%M:%S\n")
    client_session(b, "iso")
    line = b.wait_log(r"New client connected from .* as iso")
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d): New client", line)
    assert m, line
    t = time.mktime(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    assert abs(t - time.time()) < 60


def test_log_timestamp_false(broker_factory):
    b = broker_factory("log_timestamp false\n")
    client_session(b, "bare")
    line = b.wait_log(r"New client connected from .* as bare")
    assert line.startswith("New client connected"), line


@pytest.mark.hato_only("uses threads 1 to order the lines of two clients; failed logins stay")
def test_connection_messages_false(broker_factory, tmp_path):
    """connection_messages false: no line for connections and disconnections; other lines
    (here a subscription, and a failed login, which is a warning) are still logged."""
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    b = broker_factory(f"threads 1\nconnection_messages false\nlog_type all\n"
                       f"password_file {pw}\n" + FAST, anonymous=False)
    c = connected_client(b, "quiet", username="alice", password="right")
    subscribe_ok(c, 1, [("q/t", 0)])
    c.close()
    bad = RawClient(b)
    assert bad.connect("guess", username="alice", password="wrong").reason == 5
    bad.close()
    b.wait_log(r"Client guess .*refused: bad user name or password")
    marker = connected_client(b, "marker", username="alice", password="right")
    subscribe_ok(marker, 1, [("marker/t", 0)])
    b.wait_log(r"^\d+: marker 0 marker/t$")
    marker.close()
    assert re.search(r"quiet 0 q/t", b.log)
    for gone in ("New connection from", "New client connected", "disconnected", "closed:"):
        assert gone not in b.log, b.log


def test_log_type_subscribe_and_unsubscribe_lines(broker_factory):
    """log_type subscribe / unsubscribe: Mosquitto's lines "CLIENT QOS FILTER" and
    "CLIENT FILTER"; the default types log neither."""
    b = broker_factory("log_type subscribe\nlog_type unsubscribe\nlog_type notice\n")
    c = connected_client(b, "subber")
    subscribe_ok(c, 1, [("a/+/c", 1), ("d/#", 2)])
    c.send(unsubscribe(2, ["d/#"]))
    c.expect(UNSUBACK)
    b.wait_log(r"^\d+: subber 1 a/\+/c$")
    b.wait_log(r"^\d+: subber 2 d/#$")
    b.wait_log(r"^\d+: subber d/#$")
    c.close()


def test_log_type_debug_traces_packets_as_mosquitto(broker_factory):
    """log_type debug: one line per packet received and sent, in Mosquitto's words."""
    b = broker_factory("log_type debug\nlog_type notice\n")
    sub = connected_client(b, "subber")
    subscribe_ok(sub, 1, [("dbg/t", 1)])
    pub = connected_client(b, "pubber")
    publish_ok(pub, "dbg/t", b"hello", qos=1, pid=7)
    got = recv_publish(sub)
    assert got.payload == b"hello"
    sub.send(pingreq())
    sub.expect(PINGRESP)
    b.wait_log(r"Received SUBSCRIBE from subber$")
    b.wait_log(r"Sending SUBACK to subber$")
    b.wait_log(r"Received PUBLISH from pubber \(d0, q1, r0, m7, 'dbg/t', \.\.\. \(5 bytes\)\)$")
    b.wait_log(r"Sending PUBLISH to subber \(d0, q1, r0, m\d+, 'dbg/t', \.\.\. \(5 bytes\)\)$")
    b.wait_log(r"Sending PUBACK to pubber \(m7, rc0\)$")
    b.wait_log(rf"Received PUBACK from subber \(Mid: {got.pid}, RC:0\)$")
    b.wait_log(r"Received PINGREQ from subber$")
    b.wait_log(r"Sending PINGRESP to subber$")
    pub.close()
    sub.close()


@pytest.mark.hato_only("runs hato's binary without the fixture (no start-up line to await)")
def test_log_type_warning_only(tmp_path):
    """log_type warning: warnings are written, notices (start-up, connections) are not."""
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    port = free_port()
    conf = write(tmp_path / "warn.conf", f"listener {port} 127.0.0.1\npassword_file {pw}\n"
                                         "log_type warning\n" + FAST)
    p = LoggedProcess([HATO_BIN, "-c", str(conf)])
    try:
        deadline = time.monotonic() + 15
        while True:  # no line says it is ready: poll the port
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert p.proc.poll() is None and time.monotonic() < deadline, p.log
                time.sleep(0.05)
        c = RawClient(port)
        assert c.connect("w-only", username="alice", password="wrong").reason == 5
        c.close()
        p.wait_log(r"^\d+: Client w-only \[127\.0\.0\.1:\d+\] refused: bad user name or password")
    finally:
        rc, _ = p.terminate()
    assert rc == 0 and not any(m in p.log for m in SANITIZER_MARKS), p.log
    assert "running" not in p.log and "New connection" not in p.log, p.log


@pytest.mark.hato_only("the fixture gives Mosquitto log_type all")
def test_default_log_types_leave_out_subscriptions(broker_factory):
    b = broker_factory()
    c = connected_client(b, "plain")
    subscribe_ok(c, 1, [("x/y", 0)])
    c.close()
    b.wait_log(r"Client plain .* disconnected|Client plain closed")
    assert not re.search(r"plain 0 x/y", b.log)


def recv_qos2(client):
    """The next PUBLISH; QoS 2 flows (which may interleave) are completed as they come."""
    while True:
        p = client.recv(WAIT)
        if p.type == PUBREL:
            client.send(ack(PUBCOMP, p.pid))
            continue
        assert p.type == PUBLISH, p
        if p.qos == 2:
            client.send(ack(PUBREC, p.pid))
        elif p.qos == 1:
            client.send(ack(PUBACK, p.pid))
        return p


def test_log_dest_topic_publishes_to_sys_broker_log(broker_factory):
    """log_dest topic: each line is published to $SYS/broker/log/<letter> (N for notices,
    M/subscribe for subscriptions), QoS 2 as Mosquitto, with its timestamp."""
    b = broker_factory("log_dest stderr\nlog_dest topic\nlog_type all\n")
    watcher = connected_client(b, "watcher")
    # The line of this very subscription may come before its SUBACK (Mosquitto's does).
    watcher.send(subscribe(1, [("$SYS/broker/log/#", 2)]))
    while True:
        p = watcher.recv(WAIT)
        if p.type == SUBACK:
            break
        assert p.type == PUBLISH and p.qos == 2, p
        watcher.send(ack(PUBREC, p.pid))
    client_session(b, "seen-on-topic")
    sub = connected_client(b, "sub-on-topic")
    subscribe_ok(sub, 1, [("some/filter", 1)])
    got = {}
    deadline = time.monotonic() + WAIT
    while not ("N" in got and "M/subscribe" in got) and time.monotonic() < deadline:
        p = recv_qos2(watcher)
        text = p.payload.decode()
        # Debug lines (one per packet, these included) are never published.
        assert p.topic != "$SYS/broker/log/D", text
        if p.topic == "$SYS/broker/log/N" and "as seen-on-topic" in text:
            got["N"] = (p, text)
        if p.topic == "$SYS/broker/log/M/subscribe" and "sub-on-topic 1 some/filter" in text:
            got["M/subscribe"] = (p, text)
    assert "N" in got and "M/subscribe" in got, got
    p, text = got["N"]
    assert p.qos == 2 and not p.retain
    assert re.match(EPOCH_PREFIX + r"New client connected from 127\.0\.0\.1:\d+ as seen-on-topic",
                    text), text
    assert re.match(EPOCH_PREFIX + r"sub-on-topic 1 some/filter$", got["M/subscribe"][1])
    sub.close()
    watcher.close()


def test_log_dest_topic_not_matched_by_hash(broker_factory):
    """The log topics are $SYS topics: a subscription to # does not receive them
    (MQTT-4.7.2-1)."""
    b = broker_factory("log_dest stderr\nlog_dest topic\n")
    everything = connected_client(b, "hash")
    subscribe_ok(everything, 1, [("#", 0)])
    watcher = connected_client(b, "watcher2")
    subscribe_ok(watcher, 1, [("$SYS/broker/log/N", 0)])
    client_session(b, "noisy")
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        p = recv_publish(watcher, timeout=WAIT)
        if "as noisy" in p.payload.decode():
            break
    everything.expect_nothing(0.3)
    everything.close()
    watcher.close()


# ---- JSON lines ------------------------------------------------------------------------------


@pytest.mark.hato_only("log_format json is hato's")
def test_log_format_json(broker_factory, tmp_path):
    """log_format json: one JSON object per line with time, level, message, and
    client_id, user and address on the lines about a client."""
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    log = tmp_path / "hato.json"
    b = broker_factory(f"log_format json\nlog_dest stderr\nlog_dest file {log}\nlog_type all\n"
                       f"password_file {pw}\n" + FAST, anonymous=False)
    c = connected_client(b, "json-client", username="alice", password="right")
    subscribe_ok(c, 1, [("j/\"quoted\"\\", 0)])
    c.close()
    wait_file(log, r"json-client .* disconnected")
    recs = json_lines(log.read_text())
    assert all({"time", "level", "message"} <= set(r) for r in recs)
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", r["time"]) for r in recs)
    conn = [r for r in recs if r["message"].startswith("New client connected")]
    assert len(conn) == 1, recs
    assert conn[0]["level"] == "notice"
    assert conn[0]["client_id"] == "json-client" and conn[0]["user"] == "alice"
    assert re.match(r"^127\.0\.0\.1:\d+$", conn[0]["address"])
    sub = [r for r in recs if r["level"] == "subscribe"]
    assert sub and sub[0]["message"] == 'json-client 0 j/"quoted"\\', sub
    start = [r for r in recs if re.search(r"version \S+ running", r["message"])]
    assert start and "client_id" not in start[0]


# ---- failed logins ---------------------------------------------------------------------------


def refuse(b, cid, version=4, **kw):
    c = RawClient(b, version=version)
    ack = c.connect(cid, **kw)
    assert ack.reason != 0
    closed_by_broker(c)
    c.close()


@pytest.mark.hato_only("hato's reasons and levels")
def test_failed_logins_are_warnings_with_the_reason(broker_factory, tmp_path):
    """Every refused login is a warning naming client id, user, address and why: unknown
    user, wrong password, no password, anonymous refused, will topic denied by the ACL
    (not authorised) — so `grep ' refused: '` finds them all."""
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "right")
    acl = write(tmp_path / "acl", "user alice\ntopic readwrite mine/#\n")
    log = tmp_path / "hato.json"
    b = broker_factory(f"log_format json\nlog_dest stderr\nlog_dest file {log}\n"
                       f"password_file {pw}\nacl_file {acl}\n" + FAST, anonymous=False)
    refuse(b, "c-unknown", username="mallory", password="x")
    refuse(b, "c-wrong", username="alice", password="wrong")
    refuse(b, "c-nopass", username="alice")
    refuse(b, "c-anon")
    refuse(b, "c-acl", username="alice", password="right",
           will={"topic": "not/mine", "payload": b"bye"})
    wait_file(log, r"c-acl.*refused")
    recs = {r["client_id"]: r for r in json_lines(log.read_text())
            if "refused:" in r["message"]}
    want = {
        "c-unknown": ("mallory", r"bad user name or password \(user 'mallory'\), unknown user"),
        "c-wrong": ("alice", r"bad user name or password \(user 'alice'\), wrong password"),
        "c-nopass": ("alice", r"bad user name or password \(user 'alice'\), no password given"),
        "c-anon": (None, r"not authorised \(user '<anonymous>'\), anonymous clients not allowed"),
        "c-acl": ("alice", r"not authorised \(user 'alice'\), will topic 'not/mine' not writable"),
    }
    for cid, (user, why) in want.items():
        r = recs.get(cid)
        assert r, f"no refusal logged for {cid}: {recs}"
        assert r["level"] == "warning", r
        assert r.get("user") == user, r
        assert re.match(r"^127\.0\.0\.1:\d+$", r["address"]), r
        assert re.search(rf"^Client {cid} \[127\.0\.0\.1:\d+\] refused: {why}", r["message"]), r


@pytest.mark.hato_only("hato's TLS log line")
def test_tls_failure_is_a_warning_with_the_address(broker_factory, tmp_path, pki):
    """A client certificate the server refuses is a failed login: a warning with the
    address and OpenSSL's reason."""
    log = tmp_path / "hato.json"
    b = broker_factory(f"log_format json\nlog_dest stderr\nlog_dest file {log}\n"
                       f"cafile {pki['ca.crt']}\ncertfile {pki['server.crt']}\n"
                       f"keyfile {pki['server.key']}\nrequire_certificate true\n")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki["ca.crt"])
    ctx.load_cert_chain(pki["other-client.crt"], pki["other-client.key"])
    try:
        c = TLSClient(b.port, ctx)
        c.send(b"\x10\x00")
        c.expect(CONNACK)
    except (ssl.SSLError, ConnectionError, OSError, TimeoutError):
        pass
    line = wait_file(log, r"TLS handshake failed")
    r = json.loads(line)
    assert r["level"] == "warning", r
    assert re.match(r"^127\.0\.0\.1:\d+$", r["address"]), r
    assert re.search(r"certificate verify failed|unable to get local issuer|unknown ca",
                     r["message"]), r
