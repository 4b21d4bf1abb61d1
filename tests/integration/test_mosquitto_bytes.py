"""Byte for byte against Debian's mosquitto 2.0: where MQTT leaves the
encoding or the order to the server, hato writes what Mosquitto writes,
because harnesses written against Mosquitto compare packets as bytes.

Each test sends the same raw bytes to hato and to a real /usr/sbin/mosquitto
started here on another ephemeral loopback port, and compares the answers
packet by packet. Fields that legitimately differ are compared by form: an
assigned client identifier (random) must have Mosquitto's shape, and a
message expiry interval may be one second apart (Mosquitto counts whole
seconds from receipt). Where hato follows the spec against Mosquitto, the
test pins both behaviours (docs/migration.md, "Protocol differences").

A step's answers are collected up to a PINGRESP: a broker answers one
connection's packets in order, so everything a packet caused on its own
connection comes before the PINGRESP of a PINGREQ sent after it.
"""

import os
import re
import subprocess
import time

import pytest

from conftest import RUN_AS, Broker, LoggedProcess, free_port
import mqttraw as m

MOSQUITTO = "/usr/sbin/mosquitto"
pytestmark = pytest.mark.skipif(not os.path.exists(MOSQUITTO),
                                reason="needs Debian's mosquitto 2.0")

UUID_FORM = r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}"


class Mosquitto(LoggedProcess):
    def __init__(self, tmp_path, config):
        self.host = "127.0.0.1"
        self.port = free_port()
        path = tmp_path / f"mosquitto-{self.port}.conf"
        path.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                        "log_dest stderr\nlog_type all\n" + RUN_AS + config)
        super().__init__([MOSQUITTO, "-c", str(path)])
        self.wait_log(r"mosquitto version \S+ running", timeout=15)


@pytest.fixture
def pair(tmp_path):
    """start(config) -> (hato, mosquitto), both with the same directives."""
    started = []

    def start(config=""):
        h = Broker(tmp_path, config)
        started.append(h)
        mq = Mosquitto(tmp_path, config)
        started.append(mq)
        return h, mq

    yield start
    for p in started:
        p.stop()  # hato's Broker.stop also checks exit status and sanitizer output


def wire(p):
    """A received packet as the bytes it came in."""
    return bytes([p.type << 4 | p.flags]) + m.varint(len(p.body)) + p.body


def ask(c, data=b""):
    """Send data then PINGREQ; the packets received before the PINGRESP."""
    c.send(data + m.pingreq())
    got = []
    for _ in range(100):
        p = c.recv()
        if p.type == m.PINGRESP:
            return got
        got.append(wire(p))
    raise AssertionError(f"no PINGRESP after {got!r}")


def ask_close(c, data=b""):
    """Send data; the packets received until the broker closes, then 'closed'."""
    if data:
        c.send(data)
    return [wire(p) for p in c.expect_closed()] + ["closed"]


def client(b, client_id, version=5, **kw):
    c = m.RawClient(b, version=version)
    c.send(m.connect(client_id, version=version, **kw))
    return c


def connected(b, client_id, version=5, **kw):
    c = client(b, client_id, version, **kw)
    ack = c.expect(m.CONNACK)
    assert ack.reason == 0, ack
    return c


def same_id_form(h_ack, m_ack, prefix="auto-"):
    """Both assigned ids have Mosquitto's form; the bytes with the ids
    replaced by a placeholder of the same length."""
    out = []
    for raw in (h_ack, m_ack):
        found = re.search(rb"\x12\x00(.)(" + re.escape(prefix.encode()) + rb"[0-9A-F-]+)", raw,
                          re.S)
        assert found, raw
        cid = found.group(2).decode()
        assert re.fullmatch(re.escape(prefix) + UUID_FORM, cid), cid
        assert found.group(1)[0] == len(cid)
        out.append(raw.replace(found.group(2), b"X" * len(cid)))
    return out


# ---- CONNACK -------------------------------------------------------------

CONNACK_CONFIGS = [
    "",
    "max_packet_size 5000\nretain_available false\nmax_qos 1\nmax_keepalive 30\n"
    "max_topic_alias 3\nmax_inflight_messages 7\n",
    "max_inflight_messages 0\nmax_topic_alias 0\n",
    "max_keepalive 30\n",
]


@pytest.mark.parametrize("config", CONNACK_CONFIGS, ids=["default", "all", "zeros", "keepalive"])
def test_connack_properties_in_mosquitto_order(pair, config):
    """Mosquitto 2.0's CONNACK: Topic Alias Maximum (absent when 0), Server
    Keep Alive (when keep alive is 0 or over max_keepalive), Assigned Client
    Identifier, Retain Available, Maximum Packet Size, Receive Maximum
    (absent when max_inflight_messages is 0), Maximum QoS (3.2.2.3 leaves
    the order free)."""
    h, mq = pair(config)
    for keepalive in (100, 0):
        for cid in ("", "named"):
            got = []
            for b in (h, mq):
                c = client(b, cid, keepalive=keepalive)
                got.append(wire(c.expect(m.CONNACK)))
                c.close()
            if cid == "":
                got = same_id_form(*got)
            assert got[0] == got[1], (config, keepalive, cid, [g.hex() for g in got])
        if keepalive == 0 or "max_keepalive" not in config:
            c3 = [client(b, "v3", version=4, keepalive=keepalive) for b in (h, mq)]
            assert [wire(c.expect(m.CONNACK)) for c in c3] == [b"\x20\x02\x00\x00"] * 2


def test_v311_keep_alive_over_max_keepalive(pair):
    """MQTT 3.1.1 cannot be told a Server Keep Alive. hato refuses a keep
    alive over max_keepalive with 0x02 Identifier rejected, as Mosquitto's
    documentation of max_keepalive says and as later 2.0 releases do;
    Debian's 2.0.11 accepts the connection."""
    h, mq = pair("max_keepalive 30\n")
    got = [wire(client(b, "ka", 4, keepalive=100).expect(m.CONNACK)) for b in (h, mq)]
    assert got == [b"\x20\x02\x00\x02", b"\x20\x02\x00\x00"]


def test_assigned_client_id_form_and_auto_id_prefix(pair):
    """Ids assigned to an empty client id (MQTT-3.1.3-6, MQTT-3.2.2-16) are the
    prefix and 36 random upper-case hex digits in UUID form, as Mosquitto's;
    auto_id_prefix replaces the prefix in both; two ids differ."""
    h, mq = pair("auto_id_prefix dev-\n")
    ids = []
    for b in (h, mq):
        for _ in range(2):
            c = client(b, "")
            ack = c.expect(m.CONNACK)
            cid = ack.props["assigned_client_id"]
            assert re.fullmatch("dev-" + UUID_FORM, cid), cid
            ids.append(cid)
            c.close()
    assert len(set(ids)) == 4
    # MQTT 3.1.1: the id is assigned too (the CONNACK cannot say it); the
    # broker logs it in the same form.
    c = client(h, "", version=4)
    assert c.expect(m.CONNACK).reason == 0
    h.wait_log(r"New client connected from \S+ as dev-" + UUID_FORM)


# ---- PUBLISH properties and acknowledgements ---------------------------

PUBLISH_PROPS = [("user_property", ("k", "v")), ("message_expiry", 100),
                 ("content_type", "ct"), ("user_property", ("k2", "v2")),
                 ("payload_format", 1), ("response_topic", "r"),
                 ("correlation_data", b"cd")]


def normal_expiry(raw):
    """Message Expiry 99 or 100 (whole seconds since receipt) written as 100."""
    i = raw.rfind(b"\x02\x00\x00\x00")
    if i >= 0 and raw[i + 4] in (99, 100):
        raw = raw[:i + 4] + b"\x64" + raw[i + 5:]
    return raw


def test_publish_properties_in_mosquitto_layout(pair):
    """A forwarded MQTT 5 PUBLISH carries the subscription identifier first,
    the publisher's properties in the order it sent them (user properties
    interleaved as sent), the message expiry left last (2.2.2.2 leaves the
    order free). Subscriber on another connection, QoS 1 and 0."""
    h, mq = pair()
    got = []
    for b in (h, mq):
        sub = connected(b, "sub")
        assert ask(sub, m.subscribe(1, [("p/#", 1)], version=5,
                                    properties=[("subscription_id", 300)])) == \
            [b"\x90\x04\x00\x01\x00\x01"]
        pub = connected(b, "pub")
        out = ask(pub, m.publish("p/t", b"x", qos=1, pid=5, version=5,
                                 properties=PUBLISH_PROPS))
        out += ask(pub, m.publish("p/u", b"y", qos=0, version=5,
                                  properties=PUBLISH_PROPS[2:4]))
        out += [wire(sub.expect(m.PUBLISH)) for _ in range(2)]
        out += ask(sub, m.ack(m.PUBACK, 1))
        got.append([normal_expiry(x) for x in out])
    assert got[0] == got[1], [[x.hex() for x in g] for g in got]


def test_acks_without_reason_byte_on_success_3_4_2_1(pair):
    """MQTT 5 PUBACK, PUBREC, PUBREL and PUBCOMP with Success and no property
    are 2 bytes of remaining length (3.4.2.1 allows leaving the reason out),
    in both directions of a QoS 1 and QoS 2 flow."""
    h, mq = pair()
    got = []
    for b in (h, mq):
        sub = connected(b, "asub")
        ask(sub, m.subscribe(1, [("q/#", 2)], version=5))
        pub = connected(b, "apub")
        out = ask(pub, m.publish("q/1", b"one", qos=1, pid=1, version=5))
        out += ask(pub, m.publish("q/2", b"two", qos=2, pid=2, version=5))
        out += ask(pub, m.ack(m.PUBREL, 2))
        d1, d2 = sub.expect(m.PUBLISH), sub.expect(m.PUBLISH)
        out += [wire(d1), wire(d2)]
        out += ask(sub, m.ack(m.PUBACK, d1.pid))
        out += ask(sub, m.ack(m.PUBREC, d2.pid))
        out += ask(sub, m.ack(m.PUBCOMP, d2.pid))
        got.append(out)
    assert got[0] == got[1], [[x.hex() for x in g] for g in got]
    assert got[0][0] == b"\x40\x02\x00\x01"
    for raw in got[0]:
        if raw[0] >> 4 in (m.PUBACK, m.PUBREC, m.PUBREL, m.PUBCOMP) and len(raw) > 4:
            assert raw[4] != 0, raw  # a reason byte is only there when not Success


def test_qos1_copy_then_puback_qos2_pubrec_first_same_connection(pair):
    """A subscriber publishing to its own subscription. QoS 1: the copy, then
    the PUBACK, in both brokers. QoS 2: the PUBREC comes first in both;
    Mosquitto forwards the copy only at PUBREL (4.3.3 method A), hato right
    after the PUBREC (method B); both are allowed and pinned here."""
    h, mq = pair()
    res = {}
    for name, b in (("hato", h), ("mosquitto", mq)):
        c = connected(b, "self")
        ask(c, m.subscribe(1, [("s/#", 2)], version=5))
        q1 = ask(c, m.publish("s/1", b"a", qos=1, pid=7, version=5))
        q2 = ask(c, m.publish("s/2", b"b", qos=2, pid=8, version=5))
        rel = ask(c, m.ack(m.PUBREL, 8))
        res[name] = (q1, q2, rel)
    hq1, hq2, hrel = res["hato"]
    mq1, mq2, mrel = res["mosquitto"]
    assert hq1 == mq1 == [b"\x32\x09\x00\x03s/1\x00\x01\x00a", b"\x40\x02\x00\x07"]
    assert hq2[0] == mq2[0] == b"\x50\x02\x00\x08"  # PUBREC before any copy
    copy = b"\x34\x09\x00\x03s/2\x00\x02\x00b"
    assert mq2 == [b"\x50\x02\x00\x08"] and mrel == [copy, b"\x70\x02\x00\x08"]
    assert hq2 == [b"\x50\x02\x00\x08", copy] and hrel == [b"\x70\x02\x00\x08"]


def test_pubrec_success_when_nobody_subscribes(pair):
    """QoS 2 to a topic nobody subscribes: PUBREC Success in both (Mosquitto
    does not report 0x10 for QoS 2); QoS 1: PUBACK 0x10 in both."""
    h, mq = pair()
    got = [ask(connected(b, "lonely"), m.publish("none/1", b"x", qos=1, pid=1, version=5) +
               m.publish("none/2", b"x", qos=2, pid=2, version=5)) for b in (h, mq)]
    assert got[0] == got[1] == [b"\x40\x03\x00\x01\x10", b"\x50\x02\x00\x02"]


# ---- Limits -----------------------------------------------------------------

def levels(n):
    return "/".join(["l"] * n)


@pytest.mark.parametrize("version", [5, 4])
def test_topic_levels_limit_as_mosquitto(pair, version):
    """201 levels (200 separators) are fine; 202 end the connection: PUBLISH
    with DISCONNECT 0x82, SUBSCRIBE and UNSUBSCRIBE with 0x81 (MQTT 5),
    closed without a word (MQTT 3.1.1); a will topic: no CONNACK."""
    h, mq = pair()
    got = []
    for b in (h, mq):
        out = []
        c = connected(b, "lv", version)
        out += ask(c, m.publish(levels(201), b"x", qos=1, pid=1, version=version))
        out += ask(c, m.subscribe(2, [(levels(201), 1)], version=version))
        out += ask(c, m.unsubscribe(3, [levels(201)], version=version))
        for data in (m.publish(levels(202), b"x", qos=1, pid=4, version=version),
                     m.subscribe(5, [("ok", 0), (levels(202), 0)], version=version),
                     m.unsubscribe(6, [levels(202)], version=version)):
            out += ask_close(connected(b, "lv", version), data)
        out += ask_close(client(b, "lvw", version, will={"topic": levels(202), "payload": b"w"}))
        got.append(out)
    assert got[0] == got[1], [[x.hex() if isinstance(x, bytes) else x for x in g] for g in got]


@pytest.mark.parametrize("version", [5, 4])
def test_oversize_publish_answer(pair, version):
    """A PUBLISH over message_size_limit is dropped and acknowledged. MQTT 5:
    Mosquitto says 0x95, which is not a PUBACK or PUBREC reason code
    (MQTT-3.4.2-1, 3.5.2-1); hato says 0x97 Quota exceeded, which is.
    MQTT 3.1.1: the same plain acknowledgement from both."""
    h, mq = pair("message_size_limit 100\n")
    got = []
    for b in (h, mq):
        c = connected(b, "big", version)
        got.append(ask(c, m.publish("t", b"x" * 200, qos=1, pid=3, version=version) +
                       m.publish("t", b"x" * 200, qos=2, pid=4, version=version) +
                       m.publish("t", b"x" * 200, qos=0, version=version)))
    if version == 5:
        assert got[0] == [b"\x40\x03\x00\x03\x97", b"\x50\x03\x00\x04\x97"]
        assert got[1] == [b"\x40\x03\x00\x03\x95", b"\x50\x03\x00\x04\x95"]
    else:
        assert got[0] == got[1] == [b"\x40\x02\x00\x03", b"\x50\x02\x00\x04"]


# ---- MQTT 3.1 -----------------------------------------------------------------

def test_mqisdp_pubrel_with_dup_after_reconnect(pair):
    """MQTT 3.1 has no reserved flags: a client re-sending PUBREL after a
    reconnect sets DUP (0x6A). Mosquitto answers PUBCOMP; so does hato (it
    closed the connection). MQTT 3.1.1 requires 0x62 (MQTT-3.6.1-1): both
    close."""
    h, mq = pair()
    got = []
    for b in (h, mq):
        c = connected(b, "old", 3, clean=False)
        out = ask(c, m.publish("z", b"x", qos=2, pid=9, version=3))
        c.close()
        c = m.RawClient(b, version=3)
        c.send(m.connect("old", version=3, clean=False))
        out.append(wire(c.expect(m.CONNACK)))
        out += ask(c, bytes([0x6A, 2, 0, 9]))
        out += ask(c, bytes([0x6A, 2, 0, 10]))  # an id it does not know: PUBCOMP too
        out += ask_close(connected(b, "new", 4), bytes([0x6A, 2, 0, 9]))
        got.append(out)
    assert got[0] == got[1] == [b"\x50\x02\x00\x09", b"\x20\x02\x00\x00", b"\x70\x02\x00\x09",
                                b"\x70\x02\x00\x0a", "closed"]


# ---- Wills --------------------------------------------------------------------

@pytest.mark.parametrize("version", [5, 4])
def test_will_to_reserved_topic_accepted_and_dropped(pair, version):
    """A will to $SYS/... or $share/... is accepted at CONNECT and never
    published (clients must not feed $SYS); a will to another $ topic is.
    The will fires when a second connection takes the session over; that
    connection's own PUBLISH follows on the same worker, so anything the
    will produced arrives before it."""
    h, mq = pair()
    got = []
    for b in (h, mq):
        sub = connected(b, "watch", version)
        ask(sub, m.subscribe(1, [("$SYS/x", 0), ("$share/g/x", 0), ("x", 0), ("$foo", 0),
                                 ("barrier", 0)], version=version))
        out = []
        for topic in ("$SYS/x", "$share/g/x", "$foo"):
            w = client(b, "willer", version, will={"topic": topic, "payload": b"gone"})
            out.append(wire(w.expect(m.CONNACK)))
            again = connected(b, "willer", version)
            again.send(m.publish("barrier", topic, version=version))
            for _ in range(3):
                p = sub.expect(m.PUBLISH)
                out.append(wire(p))
                if p.topic == "barrier":
                    break
            again.close()
            w.close()
        got.append(out)
    assert got[0] == got[1], [[x.hex() for x in g] for g in got]
    assert sum(1 for x in got[0] if x[0] >> 4 == m.PUBLISH) == 4  # 3 barriers + $foo


# ---- Where hato follows the spec -------------------------------------------

def test_wrong_password_v5_0x86_where_mosquitto_sends_0x87(pair, tmp_path):
    """MQTT 5 CONNECT with a wrong password: 0x86 Bad User Name or Password
    from hato (3.2.2.2), 0x87 Not authorized from Mosquitto; no password at
    all: 0x87 from both; MQTT 3.1.1: 0x05 from both."""
    pw = tmp_path / "passwd"
    pw.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(pw), "alice", "secret"], check=True,
                   timeout=30)
    h, mq = pair(f"password_file {pw}\nallow_anonymous false\n")
    got = []
    for b in (h, mq):  # hato answers failures after auth_fail_delay (1 s, doubling)
        got.append([wire(client(b, "p", 5, username="alice", password="wrong")
                         .expect(m.CONNACK, timeout=30)),
                    wire(client(b, "p", 5).expect(m.CONNACK, timeout=30)),
                    wire(client(b, "p", 4, username="alice", password="wrong")
                         .expect(m.CONNACK, timeout=30))])
    assert got[0] == [b"\x20\x03\x00\x86\x00", b"\x20\x03\x00\x87\x00", b"\x20\x02\x00\x05"]
    assert got[1] == [b"\x20\x03\x00\x87\x00", b"\x20\x03\x00\x87\x00", b"\x20\x02\x00\x05"]


def test_will_delay_and_session_ending_with_connection(pair):
    """Will Delay 3 s, Session Expiry 0: the session ends with the connection,
    and MQTT-3.1.3-9 publishes the will then ("or the Session ends, whichever
    happens first"): hato at once. Mosquitto 2.0 waits for the delay."""
    h, mq = pair()
    took = {}
    for name, b in (("hato", h), ("mosquitto", mq)):
        sub = connected(b, "dsub")
        ask(sub, m.subscribe(1, [("dw", 0)], version=5))
        w = client(b, "dwill", 5, will={"topic": "dw", "payload": b"bye",
                                        "properties": [("will_delay", 3)]})
        w.expect(m.CONNACK)
        start = time.monotonic()
        w.close()
        assert sub.expect(m.PUBLISH, timeout=10).payload == b"bye"
        took[name] = time.monotonic() - start
    assert took["hato"] < 2.0, took
    assert took["mosquitto"] >= 2.0, took


def test_other_differences_pinned_both_ways(pair):
    """The remaining rows of docs/migration.md "Protocol differences", each
    answer of both brokers: session takeover (MQTT-3.1.4-3: DISCONNECT 0x8E
    from hato), PUBREL of an unknown id (PUBCOMP 0x92 / 0x00), an unexpected
    AUTH (DISCONNECT 0x82 / closed), overlapping subscriptions (one copy with
    both identifiers / one copy per subscription, MQTT-3.3.4-3..5)."""
    h, mq = pair()
    res = {}
    for name, b in (("hato", h), ("mosquitto", mq)):
        old = connected(b, "taken")
        connected(b, "taken")
        out = [ask_close(old)]
        c = connected(b, "rel")
        out.append(ask(c, m.ack(m.PUBREL, 77)))
        out.append(ask_close(connected(b, "auth"), m.packet(m.AUTH, 0, b"\x18\x00")))
        s = connected(b, "overlap")
        ask(s, m.subscribe(1, [("o/#", 0)], version=5, properties=[("subscription_id", 1)]))
        ask(s, m.subscribe(2, [("o/+", 0)], version=5, properties=[("subscription_id", 2)]))
        out.append(sorted(ask(s, m.publish("o/t", b"x", version=5))))
        res[name] = out
    assert res["hato"] == [[b"\xe0\x01\x8e", "closed"], [b"\x70\x03\x00\x4d\x92"],
                           [b"\xe0\x01\x82", "closed"],
                           [b"\x30\x0b\x00\x03o/t\x04\x0b\x01\x0b\x02x"]]
    assert res["mosquitto"] == [["closed"], [b"\x70\x02\x00\x4d"], ["closed"],
                                [b"\x30\x09\x00\x03o/t\x02\x0b\x01x",
                                 b"\x30\x09\x00\x03o/t\x02\x0b\x02x"]]


def test_keep_alive_expiry_and_shutdown_reason_codes(pair):
    """MQTT 5 keep alive expired (MQTT-3.1.2-22): hato sends DISCONNECT 0x8D
    before closing, Mosquitto closes silently; on SIGTERM hato sends 0x8B
    Server shutting down, Mosquitto closes silently."""
    h, mq = pair()
    got = {}
    for name, b in (("hato", h), ("mosquitto", mq)):
        idle = connected(b, "idle", keepalive=1)
        down = connected(b, "down")
        got[name] = [[wire(p) for p in idle.expect_closed(timeout=10)]]
        b.signal(15)
        got[name].append([wire(p) for p in down.expect_closed(timeout=10)])
    assert got == {"hato": [[b"\xe0\x01\x8d"], [b"\xe0\x01\x8b"]], "mosquitto": [[], []]}
