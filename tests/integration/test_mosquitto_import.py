"""Migration from mosquitto.db: files written by Debian's mosquitto 2.0.11 during
the test are taken over by hato, and the same clients reconnecting get what
Mosquitto itself would have delivered (docs/migration.md, "Moving mosquitto.db").

One module fixture runs the scenario on a real mosquitto with `persistence
true`: retained messages (with MQTT 5 properties), persistent MQTT 5 and
3.1.1 sessions with subscription options and identifiers, QoS 1 and 2
messages queued for them, messages left in flight by a client that
disconnects without acknowledging (PUBACK, PUBREC and PUBCOMP states), and an
incoming QoS 2 message Mosquitto holds until PUBREL. SIGTERM makes mosquitto
write the file; two copies are then restarted, one under mosquitto and one
under hato, and what every client receives is compared.
"""

import os
import re
import subprocess

import paho.mqtt.client as paho
import paho.mqtt.properties as paho_props
from paho.mqtt.packettypes import PacketTypes
import pytest

from conftest import HATO_BIN, RUN_AS, LoggedProcess, free_port
from mqttraw import (PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK, RawClient, ack,
                     disconnect, drain, publish, sub_opts, subscribe)

MOSQUITTO = "/usr/sbin/mosquitto"
HATO_STORE = os.path.join(os.path.dirname(HATO_BIN), "hato-store")

pytestmark = pytest.mark.skipif(not os.path.exists(MOSQUITTO), reason="needs Debian's mosquitto")


class Mosquitto(LoggedProcess):
    """Debian's mosquitto with persistence in `store_dir`, on a free loopback port."""

    def __init__(self, tmp_dir, store_dir):
        self.host, self.port = "127.0.0.1", free_port()
        conf = os.path.join(str(tmp_dir), f"mosquitto-{self.port}.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n{RUN_AS}"
                    f"persistence true\npersistence_location {store_dir}/\n"
                    "log_dest stderr\nlog_type all\n")
        super().__init__([MOSQUITTO, "-c", conf])
        self.wait_log(r"version \S+ running", timeout=15)

    def stop(self):
        """SIGTERM (mosquitto writes its file), by PID; wait for the exit."""
        rc, in_time = self.terminate()
        assert in_time and rc == 0, f"mosquitto rc={rc}:\n{self.log}"


def v5(port, cid, clean=False, expiry=3600):
    c = RawClient(port, version=5)
    ca = c.connect(cid, clean=clean, properties=[("session_expiry", expiry)] if expiry else None)
    assert ca.reason == 0
    return c, ca


def v3(port, cid, clean=False):
    c = RawClient(port, version=4)
    ca = c.connect(cid, clean=clean)
    assert ca.reason == 0
    return c, ca


def sub(c, pid, filters, props=None):
    c.send(subscribe(pid, filters, version=c.version, properties=props))
    p = c.expect(SUBACK)
    assert all(x < 0x80 for x in p.codes), p.codes


def paho_publish_retained(port):
    """paho-mqtt (MQTT 5) publishes the retained messages, two with properties."""
    cl = paho.Client(client_id="paho-retainer", protocol=paho.MQTTv5)
    cl.connect("127.0.0.1", port)
    cl.loop_start()
    try:
        pr = paho_props.Properties(PacketTypes.PUBLISH)
        pr.MessageExpiryInterval = 3600
        pr.ContentType = "text/plain"
        pr.ResponseTopic = "resp/x"
        pr.CorrelationData = b"\x01\x02\x03"
        pr.UserProperty = [("a", "1"), ("b", "2")]
        pr.PayloadFormatIndicator = 1
        infos = [cl.publish("r/props", b"with properties", qos=1, retain=True, properties=pr),
                 cl.publish("r/plain", b"plain", qos=2, retain=True)]
        pr2 = paho_props.Properties(PacketTypes.PUBLISH)
        pr2.UserProperty = [("k", "v")]
        infos.append(cl.publish("r/deep/one", b"\x00\xffbinary", qos=0, retain=True,
                                properties=pr2))
        for i in infos:
            i.wait_for_publish(timeout=10)
            assert i.is_published()
    finally:
        cl.disconnect()
        cl.loop_stop()
    # A v3.1.1 paho client too, and a retained message cleared again.
    c3 = paho.Client(client_id="paho-v3", protocol=paho.MQTTv311)
    c3.connect("127.0.0.1", port)
    c3.loop_start()
    try:
        for args in (("r/v3", b"from 3.1.1", 1, True), ("r/gone", b"x", 1, True),
                     ("r/gone", b"", 1, True)):
            i = c3.publish(*args)
            i.wait_for_publish(timeout=10)
    finally:
        c3.disconnect()
        c3.loop_stop()


MSG_PROPS = [("content_type", "application/json"), ("correlation_data", b"cid-1"),
             ("user_property", ("x", "y")), ("payload_format", 1),
             ("response_topic", "reply/here")]


def run_scenario(port):
    """Everything before the shutdown; returns what the test needs to know."""
    paho_publish_retained(port)
    # Persistent sessions, then away.
    s5, _ = v5(port, "sub5")
    sub(s5, 1, [("q/#", sub_opts(2, no_local=True, retain_as_published=True))],
        props=[("subscription_id", 7)])
    sub(s5, 2, [("p/+", sub_opts(1))], props=[("subscription_id", 9)])
    sub(s5, 3, [("$share/g/s/#", sub_opts(1))])
    drain(s5, quiet=0.2)
    s5.send(disconnect())
    s5.close()
    s3, _ = v3(port, "sub3")
    sub(s3, 1, [("q/#", 1), ("q3/+", 2)])
    s3.send(disconnect())
    s3.close()
    # A client that will leave messages in flight.
    fl, _ = v5(port, "flight5")
    sub(fl, 1, [("f/#", sub_opts(2))])
    # Publishers.
    pub, _ = v3(port, "pub", clean=True)
    for topic, payload, qos, retain in (("q/a", "m1", 1, False), ("q/b", "m2", 2, False),
                                        ("q/c", "m3 qos0 not queued", 0, False),
                                        ("q3/x", "m4", 2, False), ("q/a", "m5 retained", 1, True),
                                        ("s/1", "shared", 1, False)):
        pub.send(publish(topic, payload, qos=qos, retain=retain, pid=10))
        if qos == 1:
            pub.expect(PUBACK)
        elif qos == 2:
            pub.expect(PUBREC)
            pub.send(ack(PUBREL, 10))
            pub.expect(PUBCOMP)
    p5, _ = v5(port, "pub5", clean=True, expiry=0)
    p5.send(publish("p/1", "v5 props", qos=2, pid=3, version=5, properties=MSG_PROPS))
    p5.expect(PUBREC)
    p5.send(ack(PUBREL, 3))
    p5.expect(PUBCOMP)
    p5.send(publish("q/expiring", "expires", qos=1, pid=4, version=5,
                    properties=[("message_expiry", 7200)]))
    p5.expect(PUBACK)
    # In flight with flight5: QoS 1 unacknowledged, QoS 2 unacknowledged, QoS 2 after PUBREC.
    for i, (topic, qos) in enumerate((("f/1", 1), ("f/2", 2), ("f/3", 2)), start=20):
        pub.send(publish(topic, f"flight {topic}", qos=qos, pid=i))
        pub.expect(PUBACK if qos == 1 else PUBREC)
        if qos == 2:
            pub.send(ack(PUBREL, i))
            pub.expect(PUBCOMP)
    got = [fl.expect(PUBLISH) for _ in range(3)]
    assert [p.topic for p in got] == ["f/1", "f/2", "f/3"]
    fl.send(ack(PUBREC, got[2].pid))
    rel = fl.expect(PUBREL)
    assert rel.pid == got[2].pid
    fl.close()  # no acknowledgement, no DISCONNECT
    # An incoming QoS 2 message held by Mosquitto until its PUBREL.
    held, _ = v3(port, "held3")
    held.send(publish("q/held", "held until PUBREL", qos=2, pid=77))
    held.expect(PUBREC)
    held.close()
    pub.send(disconnect())
    pub.close()
    p5.send(disconnect())
    p5.close()
    return {"flight_pids": [p.pid for p in got]}


def pub_view(p):
    """What is compared of a delivered PUBLISH."""
    props = {k: v for k, v in p.props.items() if k != "message_expiry"}
    return (p.topic, p.payload, p.qos, p.retain, tuple(sorted(props.items(), key=str)),
            tuple(p.user_props), "message_expiry" in p.props)


EXPIRY = {}  # (client, topic) -> message expiry interval last received


def collect(c, limit=100, quiet=0.5):
    """Every packet until quiet, answering QoS flows completely; returns the records."""
    out = []
    for _ in range(limit):
        try:
            p = c.recv(quiet)
        except TimeoutError:
            break
        if p.type == PUBLISH:
            out.append(("PUBLISH",) + pub_view(p))
            if "message_expiry" in p.props:
                EXPIRY[(id(c), p.topic)] = p.props["message_expiry"]
            if p.qos == 1:
                c.send(ack(PUBACK, p.pid))
            elif p.qos == 2:
                c.send(ack(PUBREC, p.pid))
        elif p.type == PUBREL:
            c.send(ack(PUBCOMP, p.pid))  # new packet ids are the broker's choice
        else:
            out.append(("type", p.type))
    return out


def reconnect_all(port):
    """The clients come back; what each receives, in order."""
    rec = {}
    s5, ca = v5(port, "sub5")
    rec["sub5 present"] = ca.session_present
    rec["sub5"] = collect(s5)
    s3, ca = v3(port, "sub3")
    rec["sub3 present"] = ca.session_present
    rec["sub3"] = collect(s3)
    # flight5: the unacknowledged messages again, with their packet ids, DUP set; PUBREL.
    fl, ca = v5(port, "flight5")
    rec["flight5 present"] = ca.session_present
    first = []
    for _ in range(3):
        p = fl.recv(5)
        first.append((p.type, p.pid, getattr(p, "topic", None), getattr(p, "dup", None)))
        if p.type == PUBLISH:
            fl.send(ack(PUBACK if p.qos == 1 else PUBREC, p.pid))
        else:
            fl.send(ack(PUBCOMP, p.pid))
    rec["flight5"] = first + collect(fl)
    # The held message's PUBREL: answered, and then it reaches the subscribers.
    held, ca = v3(port, "held3")
    rec["held3 present"] = ca.session_present
    held.send(ack(PUBREL, 77))
    p = held.expect(PUBCOMP)
    rec["held3 pubcomp"] = p.pid
    rec["sub5 after"] = collect(s5)
    rec["sub3 after"] = collect(s3)
    # A new subscriber sees the retained messages (order across topics is not defined).
    r, _ = v5(port, "fresh", clean=True, expiry=0)
    sub(r, 1, [("r/#", sub_opts(2))])
    rec["retained"] = sorted(collect(r))
    rec["expiry"] = {"sub5 q/expiring": EXPIRY.pop((id(s5), "q/expiring"), None),
                     "fresh r/props": EXPIRY.pop((id(r), "r/props"), None)}
    for c in (s5, s3, fl, held, r):
        c.send(disconnect())
        c.close()
    return rec


@pytest.fixture(scope="module")
def mosq_file(tmp_path_factory):
    """A mosquitto.db written by mosquitto 2.0.11 after the scenario, and its facts."""
    d = tmp_path_factory.mktemp("mosq")
    store = d / "store"
    store.mkdir()
    m = Mosquitto(d, store)
    try:
        facts = run_scenario(m.port)
    finally:
        m.stop()
    data = (store / "mosquitto.db").read_bytes()
    assert data[:15] == b"\x00\xb5\x00mosquitto db"
    return data, facts


def hato_config(store_dir, extra=""):
    return f"persistence true\npersistence_location {store_dir}/\n{extra}"


def by_qos(rec, client):
    """A client's deliveries (before and after the held message's PUBREL) per QoS, in order.

    MQTT orders deliveries per topic and QoS (4.6); across QoS levels the brokers may
    interleave: hato sends a stored QoS 2 message once its packet id is committed, so
    QoS 1 messages queued behind it can overtake it. Mosquitto releases the held
    message on PUBREL, hato at the import (it is queued last): both orders agree."""
    out = {}
    for r in rec[client] + rec[client + " after"]:
        out.setdefault(r[3], []).append(r)
    return out


def normalise(rec):
    n = {k: v for k, v in rec.items()
         if k not in ("sub5", "sub3", "sub5 after", "sub3 after", "expiry")}
    n["sub5"] = by_qos(rec, "sub5")
    n["sub3"] = by_qos(rec, "sub3")
    return n


def compare(mosq_rec, hato_rec, label):
    mosq_rec, hato_rec = normalise(mosq_rec), normalise(hato_rec)
    assert hato_rec == mosq_rec, f"{label}: hato differs from mosquitto:\n" + "\n".join(
        f"  {k}:\n    mosquitto {mosq_rec.get(k)!r}\n    hato      {hato_rec.get(k)!r}"
        for k in sorted(set(mosq_rec) | set(hato_rec), key=str)
        if mosq_rec.get(k) != hato_rec.get(k))


def test_reconnecting_clients_get_what_mosquitto_delivers(mosq_file, tmp_path, broker_factory):
    data, facts = mosq_file
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "mosquitto.db").write_bytes(data)
    (b / "mosquitto.db").write_bytes(data)
    m = Mosquitto(tmp_path, a)
    try:
        mosq_rec = reconnect_all(m.port)
    finally:
        m.stop()
    h = broker_factory(hato_config(b))
    line = h.wait_log(r"imported Mosquitto's")
    hato_rec = reconnect_all(h.port)
    h.stop()
    compare(mosq_rec, hato_rec, "after restart")
    # The facts the comparison rests on (so that it cannot pass on two empty brokers).
    assert mosq_rec["sub5 present"] and mosq_rec["sub3 present"] and mosq_rec["flight5 present"]
    # Message expiry kept running through both restarts (the intervals were 7200 and 3600 s).
    for k, limit in (("sub5 q/expiring", 7200), ("fresh r/props", 3600)):
        m_left, h_left = mosq_rec["expiry"][k], hato_rec["expiry"][k]
        assert m_left is not None and h_left is not None, (k, m_left, h_left)
        assert limit - 120 < m_left <= limit and limit - 120 < h_left <= limit, (k, m_left, h_left)
        assert abs(m_left - h_left) <= 60, (k, m_left, h_left)
    topics5 = [r[1] for r in mosq_rec["sub5"]]
    assert topics5 == ["q/a", "q/b", "q/a", "s/1", "p/1", "q/expiring"], mosq_rec["sub5"]
    assert [(r[1], r[3]) for r in mosq_rec["sub3"]] == [
        ("q/a", 1), ("q/b", 1), ("q3/x", 2), ("q/a", 1), ("q/expiring", 1)], mosq_rec["sub3"]
    assert [r[1] for r in mosq_rec["sub5 after"]] == ["q/held"]
    assert [r[1] for r in hato_rec["sub5"]][-1] == "q/held"
    assert [x[1] for x in mosq_rec["flight5"][:3]] == facts["flight_pids"]
    assert mosq_rec["flight5"][2][0] == PUBREL
    assert [r[1] for r in mosq_rec["retained"]] == ["r/deep/one", "r/plain", "r/props", "r/v3"]
    # Mosquitto 2.0 does not save shared subscriptions ($share/g/s/#): 5 of the 6.
    assert "5 retained messages, 4 sessions (5 subscriptions), 13 queued and 3 in-flight" in line
    assert "1 QoS 2 id awaiting PUBREL" in line, line
    # The original moved aside, unchanged; the store took its place.
    assert (b / "mosquitto.db.imported").read_bytes() == data
    assert (b / "mosquitto.db").read_bytes()[:15] != data[:15]


def test_hato_store_import_mosquitto(mosq_file, tmp_path):
    data, _ = mosq_file
    src = tmp_path / "mosquitto.db"
    src.write_bytes(data)
    store = tmp_path / "hato"
    store.mkdir()
    r = subprocess.run([HATO_STORE, "import-mosquitto", str(src), str(store / "hato.db")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "5 retained messages, 4 sessions (5 subscriptions)" in r.stdout, r.stdout
    assert (tmp_path / "mosquitto.db.imported").read_bytes() == data
    assert not src.exists()
    chk = subprocess.run([HATO_STORE, "check", str(store / "hato.db")], capture_output=True,
                         text=True, timeout=30)
    assert chk.returncode == 0, chk.stdout + chk.stderr
    assert "4 sessions" in chk.stdout and "5 retained messages" in chk.stdout, chk.stdout
    # A second import into the now full store is refused, and the file stays.
    again = tmp_path / "again.db"
    again.write_bytes(data)
    r = subprocess.run([HATO_STORE, "import-mosquitto", str(again), str(store / "hato.db")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "not empty" in r.stderr, r.stderr
    assert again.read_bytes() == data


def damaged(data):
    """(name, bytes, expected offset) of damaged copies of a real file."""
    # The first chunk after the 23-byte header is the config chunk (8 + 16 bytes);
    # the first message store chunk starts at 47.
    out = [("truncated", data[:len(data) - 5], None),
           ("cut in a header", data[:47 + 3], 47)]
    flipped = bytearray(data)
    flipped[47 + 3] ^= 0x40  # chunk type 2 -> 0x40000002
    out.append(("flipped chunk type", bytes(flipped), 47))
    return out


@pytest.mark.parametrize("case", [0, 1, 2])
def test_damaged_file_stops_startup_and_writes_nothing(mosq_file, tmp_path, case):
    data, _ = mosq_file
    name, bad, off = damaged(data)[case]
    d = tmp_path / "store"
    d.mkdir()
    (d / "mosquitto.db").write_bytes(bad)
    port = free_port()
    conf = tmp_path / "hato.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n{RUN_AS}"
                    + hato_config(d))
    r = subprocess.run([HATO_BIN, "-c", str(conf)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, name
    out = r.stdout + r.stderr
    want = rf"{d}/mosquitto.db: offset {off if off is not None else ''}"
    assert want in out, f"{name}: {out}"
    assert "Refusing to start" in out
    # Nothing written, nothing moved.
    assert sorted(os.listdir(d)) == ["mosquitto.db"], os.listdir(d)
    assert (d / "mosquitto.db").read_bytes() == bad


RESTORED = re.escape("restored 4 sessions (5 subscriptions), 13 queued and 3 in-flight messages, "
            "1 QoS 2 id awaiting PUBREL, 5 retained messages")


def test_imported_once_then_restored_from_the_store(mosq_file, tmp_path, broker_factory):
    """The second start reads hato's own store: no second import, the same state."""
    data, _ = mosq_file
    d = tmp_path / "s"
    d.mkdir()
    (d / "mosquitto.db").write_bytes(data)
    # An earlier import's leftover keeps its name: this one becomes .imported.2.
    (d / "mosquitto.db.imported").write_bytes(b"an older one")
    h = broker_factory(hato_config(d))
    h.wait_log(r"imported Mosquitto's .*The original is now .*mosquitto\.db\.imported\.2\.")
    h.wait_log(RESTORED)
    h.stop()
    assert (d / "mosquitto.db.imported").read_bytes() == b"an older one"
    assert (d / "mosquitto.db.imported.2").read_bytes() == data
    h2 = broker_factory(hato_config(d))
    h2.wait_log(RESTORED)
    assert "imported Mosquitto's" not in h2.log
    r, _ = v5(h2.port, "fresh", clean=True, expiry=0)
    sub(r, 1, [("r/#", sub_opts(1))])
    assert sorted(p[1] for p in collect(r)) == ["r/deep/one", "r/plain", "r/props", "r/v3"]
    r.close()


def test_mosquitto_file_beside_a_store_of_another_name_is_left_alone(mosq_file, tmp_path,
                                                                     broker_factory):
    data, _ = mosq_file
    d = tmp_path / "s"
    d.mkdir()
    (d / "mosquitto.db").write_bytes(data)
    h = broker_factory(hato_config(d, "persistence_file hato.db\n"))
    h.wait_log(r"Warning: .*mosquitto\.db is a Mosquitto persistence file, but the store is "
               r".*hato\.db .*not imported")
    h.wait_log(r"restored 0 sessions")
    h.stop()
    assert (d / "mosquitto.db").read_bytes() == data


def test_interrupted_import_is_finished_at_start(mosq_file, tmp_path, broker_factory):
    """A crash after the commit and the rename of the original, before the store was put
    in place, leaves mosquitto.db.import: the next start moves it in, nothing is lost."""
    data, _ = mosq_file
    d = tmp_path / "s"
    d.mkdir()
    (d / "orig.db").write_bytes(data)
    r = subprocess.run([HATO_STORE, "import-mosquitto", str(d / "orig.db"),
                        str(d / "mosquitto.db.import")], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    os.unlink(d / "mosquitto.db.import-lock")
    h = broker_factory(hato_config(d))
    h.wait_log(r"finished the import of a Mosquitto file")
    h.wait_log(RESTORED)
    h.stop()
    assert not (d / "mosquitto.db.import").exists()
