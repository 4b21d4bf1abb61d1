"""MQTT 5.0 flows driven by a real third-party client: Eclipse Paho
(python3-paho-mqtt 1.6.1, the Debian package). Checks that the broker's
packets decode in an independent implementation and that its features work
end to end: CONNACK properties, user properties, request/response,
subscription options, topic aliases, QoS 1/2, session resumption, Will
properties.
"""

import queue

import pytest

mqtt = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402
from paho.mqtt.subscribeoptions import SubscribeOptions  # noqa: E402

TIMEOUT = 5


class Paho:
    """A paho MQTT 5 client on its own network thread; events land in queues."""

    def __init__(self, broker, client_id, clean_start=True, properties=None, will=None,
                 connect=True):
        self.c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
        self.events = {k: queue.Queue() for k in ("connect", "message", "subscribe",
                                                   "unsubscribe", "publish", "disconnect")}
        self.c.on_connect = lambda c, u, flags, rc, props: self.events["connect"].put(
            (flags, rc, props))
        self.c.on_message = lambda c, u, msg: self.events["message"].put(msg)
        self.c.on_subscribe = lambda c, u, mid, rcs, props: self.events["subscribe"].put(
            (mid, rcs, props))
        self.c.on_unsubscribe = lambda c, u, mid, props, rcs: self.events["unsubscribe"].put(
            (mid, rcs, props))
        self.c.on_publish = lambda c, u, mid: self.events["publish"].put(mid)
        self.c.on_disconnect = lambda c, u, rc, props=None: self.events["disconnect"].put(rc)
        if will:
            self.c.will_set(**will)
        self.broker = broker
        if connect:
            self.c.connect(broker.host, broker.port, keepalive=30, clean_start=clean_start,
                           properties=properties)
            self.c.loop_start()
            self.flags, self.rc, self.connack_props = self.get("connect")
            assert self.rc == 0, f"CONNACK {self.rc}"

    def get(self, kind, timeout=TIMEOUT):
        try:
            return self.events[kind].get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {kind} event in {timeout}s") from None

    def nothing(self, kind, timeout=0.3):
        try:
            ev = self.events[kind].get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected {kind}: {ev!r}")

    def subscribe(self, topic, qos=0, properties=None, **opts):
        self.c.subscribe(topic, options=SubscribeOptions(qos=qos, **opts), properties=properties)
        _, rcs, _ = self.get("subscribe")
        return [rc.value for rc in rcs]

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(TIMEOUT)
        assert info.is_published()
        return info

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def props(kind, **kw):
    p = Properties(kind)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


@pytest.fixture
def clients():
    made = []
    yield made
    for c in made:
        try:
            c.close()
        except Exception:
            pass


def test_paho_connack_assigned_client_id_and_properties_MQTT_3_2_2_16(broker, clients):
    c = Paho(broker, "")
    clients.append(c)
    cp = c.connack_props
    assert getattr(cp, "AssignedClientIdentifier", "")
    assert cp.TopicAliasMaximum == 10
    assert cp.ReceiveMaximum > 0


def test_paho_user_properties_and_request_response_MQTT_3_3_2_15_to_18(broker, clients):
    responder = Paho(broker, "paho-responder")
    requester = Paho(broker, "paho-requester")
    clients += [responder, requester]
    assert responder.subscribe("svc/req", qos=1) == [1]
    assert requester.subscribe("svc/resp/paho-requester", qos=1) == [1]
    requester.publish("svc/req", b"2+2", qos=1, properties=props(
        PacketTypes.PUBLISH, ResponseTopic="svc/resp/paho-requester",
        CorrelationData=b"\x01\x02", ContentType="text/x-sum",
        UserProperty=[("trace", "abc"), ("hop", "1"), ("trace", "def")]))
    req = responder.get("message")
    assert req.payload == b"2+2" and req.qos == 1
    assert req.properties.ResponseTopic == "svc/resp/paho-requester"
    assert req.properties.CorrelationData == b"\x01\x02"
    assert req.properties.ContentType == "text/x-sum"
    assert req.properties.UserProperty == [("trace", "abc"), ("hop", "1"), ("trace", "def")]
    responder.publish(req.properties.ResponseTopic, b"4", qos=1, properties=props(
        PacketTypes.PUBLISH, CorrelationData=req.properties.CorrelationData))
    resp = requester.get("message")
    assert resp.payload == b"4" and resp.properties.CorrelationData == b"\x01\x02"


def test_paho_subscription_options_and_identifier_MQTT_3_8_3_3_MQTT_3_3_4_3(broker, clients):
    a = Paho(broker, "paho-opts")
    clients.append(a)
    sub_props = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=77)
    assert a.subscribe("opts/t", qos=2, noLocal=True, properties=sub_props) == [2]
    assert a.subscribe("opts/mine", qos=1) == [1]
    a.publish("opts/t", b"self", qos=1)        # no local: not delivered back
    a.publish("opts/mine", b"mine", qos=1)     # ordinary: delivered
    m = a.get("message")
    assert (m.topic, m.payload) == ("opts/mine", b"mine")
    b = Paho(broker, "paho-opts-other")
    clients.append(b)
    b.publish("opts/t", b"other", qos=2)
    m = a.get("message")
    assert (m.topic, m.payload, m.qos) == ("opts/t", b"other", 2)
    assert m.properties.SubscriptionIdentifier == [77]
    a.nothing("message")


def test_paho_retain_handling_and_retain_as_published_MQTT_3_3_1_9_to_13(broker, clients):
    pub = Paho(broker, "paho-rh-pub")
    clients.append(pub)
    pub.publish("prh/a", b"stored-a", qos=1, retain=True)
    pub.publish("prh/b/x", b"stored-b", qos=1, retain=True)
    s = Paho(broker, "paho-rh")
    clients.append(s)
    assert s.subscribe("prh/a", qos=1, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND) == [1]
    s.nothing("message")
    assert s.subscribe("prh/b/#", qos=1, retainAsPublished=True) == [1]
    m = s.get("message")
    assert (m.topic, m.payload, m.retain) == ("prh/b/x", b"stored-b", True)
    pub.publish("prh/a", b"live-a", qos=1, retain=True)
    pub.publish("prh/b/x", b"live-b", qos=1, retain=True)
    got = sorted((m.topic, m.payload, m.retain) for m in (s.get("message"), s.get("message")))
    # prh/a (Retain As Published 0): retain cleared; prh/b/# (RAP 1): kept.
    assert got == [("prh/a", b"live-a", False), ("prh/b/x", b"live-b", True)]
    for t in ("prh/a", "prh/b/x"):
        pub.publish(t, b"", qos=1, retain=True)  # clear


def test_paho_topic_alias_from_client_MQTT_3_3_2_12(broker, clients):
    s = Paho(broker, "paho-alias-sub")
    p = Paho(broker, "paho-alias-pub")
    clients += [s, p]
    s.subscribe("palias/#", qos=1)
    p.publish("palias/long/topic/name", b"1", qos=1,
              properties=props(PacketTypes.PUBLISH, TopicAlias=3))
    p.publish("", b"2", qos=1, properties=props(PacketTypes.PUBLISH, TopicAlias=3))
    got = [(m.topic, m.payload) for m in (s.get("message"), s.get("message"))]
    assert got == [("palias/long/topic/name", b"1"), ("palias/long/topic/name", b"2")]


def test_paho_unsubscribe_reason_codes_3_11_3(broker, clients):
    c = Paho(broker, "paho-unsub")
    clients.append(c)
    c.subscribe("pu/a", qos=0)
    c.c.unsubscribe(["pu/a", "pu/never"])
    _, rcs, _ = c.get("unsubscribe")
    assert [rc.value for rc in rcs] == [0x00, 0x11]


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_paho_qos_round_trip_MQTT_4_3(broker, clients, qos):
    s = Paho(broker, f"paho-q{qos}-sub")
    p = Paho(broker, f"paho-q{qos}-pub")
    clients += [s, p]
    assert s.subscribe("pq/t", qos=2) == [2]
    for i in range(5):
        p.publish("pq/t", b"%d" % i, qos=qos)
    got = [s.get("message") for _ in range(5)]
    assert [m.payload for m in got] == [b"%d" % i for i in range(5)]
    assert all(m.qos == qos for m in got)
    s.nothing("message")


def test_paho_session_resumed_with_queued_message_MQTT_3_2_2_3(broker, clients):
    exp = props(PacketTypes.CONNECT, SessionExpiryInterval=60)
    s = Paho(broker, "paho-sess", clean_start=True, properties=exp)
    s.subscribe("psess/t", qos=1)
    s.close()
    p = Paho(broker, "paho-sess-pub")
    clients.append(p)
    p.publish("psess/t", b"queued", qos=1)
    s = Paho(broker, "paho-sess", clean_start=False, properties=exp)
    clients.append(s)
    assert s.flags["session present"] == 1
    m = s.get("message")
    assert (m.topic, m.payload, m.qos) == ("psess/t", b"queued", 1)


def test_paho_will_with_properties_MQTT_3_1_3_10(broker, clients):
    s = Paho(broker, "paho-will-sub")
    clients.append(s)
    s.subscribe("pwill/t", qos=1)
    w = Paho(broker, "paho-will", will=dict(
        topic="pwill/t", payload=b"lost", qos=1, properties=props(
            PacketTypes.WILLMESSAGE, ContentType="text/plain",
            UserProperty=[("why", "test")])))
    # Drop the connection without DISCONNECT: stop paho's loop, close the socket.
    w.c.loop_stop()
    w.c.socket().close()
    m = s.get("message")
    assert (m.payload, m.qos) == (b"lost", 1)
    assert m.properties.ContentType == "text/plain"
    assert m.properties.UserProperty == [("why", "test")]
