"""Flows with a real client library: paho-mqtt 1.6 speaking MQTT 3.1.1 and MQTT 3.1.

Uses paho's own network thread (loop_start) and threading.Event waits, all bounded.
"""

import queue
import threading

import paho.mqtt.client as mqtt
import pytest

PROTOCOLS = [pytest.param(mqtt.MQTTv311, id="v311"), pytest.param(mqtt.MQTTv31, id="v31")]
WAIT = 5


class Paho:
    """A paho client with its network loop running and events for what it receives."""

    def __init__(self, broker, client_id, protocol, clean_session=True, will=None, keepalive=30):
        self.c = mqtt.Client(client_id=client_id, clean_session=clean_session, protocol=protocol)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.granted = None
        self.rc = None
        self.flags = None
        self.messages = queue.Queue()
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        if will:
            self.c.will_set(**will)
        self.c.connect("127.0.0.1", broker.port, keepalive)
        self.c.loop_start()
        assert self.connected.wait(WAIT), "no CONNACK"
        assert self.rc == 0, f"connect refused rc={self.rc}"

    def _on_connect(self, c, userdata, flags, rc):
        self.flags, self.rc = flags, rc
        self.connected.set()

    def _on_subscribe(self, c, userdata, mid, granted):
        self.granted = list(granted)
        self.subscribed.set()

    def subscribe(self, topics):
        self.subscribed.clear()
        rc, _ = self.c.subscribe(topics)
        assert rc == mqtt.MQTT_ERR_SUCCESS
        assert self.subscribed.wait(WAIT), "no SUBACK"
        return self.granted

    def publish(self, topic, payload, qos=0, retain=False):
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(WAIT)
        assert info.is_published(), f"publish qos {qos} not completed"

    def get(self, timeout=WAIT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no message received") from None

    def nothing(self, timeout=0.3):
        try:
            m = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message on {m.topic}: {m.payload!r}")

    def stop(self):
        self.c.disconnect()
        self.c.loop_stop()

    def drop(self):
        """End the connection without DISCONNECT (abnormal close)."""
        self.c.loop_stop()
        sock = self.c.socket()
        if sock is not None:
            sock.close()


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_paho_pubsub_all_qos(broker, proto):
    """Connect, subscribe at QoS 2, publish QoS 0/1/2 and receive each with its QoS (MQTT-3.8.4-6)."""
    sub = Paho(broker, "paho-sub", proto)
    pub = Paho(broker, "paho-pub", proto)
    try:
        assert sub.subscribe([("paho/t", 2)]) == [2]
        for q in range(3):
            pub.publish("paho/t", f"qos{q}".encode(), qos=q)
            m = sub.get()
            assert m.topic == "paho/t" and m.payload == f"qos{q}".encode() and m.qos == q
            assert not m.retain
        sub.nothing()
    finally:
        sub.stop()
        pub.stop()


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_paho_downgrade_and_wildcards(broker, proto):
    """Granted QoS 1 caps a QoS 2 publish; '+' and '#' subscriptions work through paho."""
    sub = Paho(broker, "paho-w", proto)
    pub = Paho(broker, "paho-p", proto)
    try:
        assert sub.subscribe([("pw/+/x", 1), ("pw/deep/#", 0)]) == [1, 0]
        pub.publish("pw/a/x", b"plus", qos=2)
        m = sub.get()
        assert m.payload == b"plus" and m.qos == 1
        pub.publish("pw/deep/er/still", b"hash", qos=1)
        m = sub.get()
        assert m.payload == b"hash" and m.qos == 0
        pub.publish("pw/a/y", b"no", qos=1)
        sub.nothing()
    finally:
        sub.stop()
        pub.stop()


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_paho_retained(broker, proto):
    """A retained message reaches a later subscriber with retain set (MQTT-3.3.1-6, -8) and an
    empty retained message clears it (MQTT-3.3.1-10)."""
    pub = Paho(broker, "paho-rp", proto)
    try:
        pub.publish("pr/t", b"stored", qos=1, retain=True)
        sub = Paho(broker, "paho-rs", proto)
        try:
            sub.subscribe([("pr/t", 1)])
            m = sub.get()
            assert m.payload == b"stored" and m.retain and m.qos == 1
        finally:
            sub.stop()
        pub.publish("pr/t", b"", qos=1, retain=True)
        sub = Paho(broker, "paho-rs2", proto)
        try:
            sub.subscribe([("pr/t", 1)])
            sub.nothing(0.5)
        finally:
            sub.stop()
    finally:
        pub.stop()


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_paho_will_on_abnormal_close(broker, proto):
    """paho's will_set: published when the connection drops (MQTT-3.1.2-8), not on a clean
    disconnect (MQTT-3.1.2-10)."""
    watch = Paho(broker, "paho-watch", proto)
    try:
        watch.subscribe([("pwill/#", 1)])
        polite = Paho(broker, "paho-polite", proto,
                      will=dict(topic="pwill/polite", payload=b"no", qos=1))
        polite.stop()
        dying = Paho(broker, "paho-dying", proto,
                     will=dict(topic="pwill/dying", payload=b"bye", qos=1, retain=False))
        dying.drop()
        m = watch.get()
        assert m.topic == "pwill/dying" and m.payload == b"bye" and m.qos == 1
        watch.nothing(0.5)
    finally:
        watch.stop()


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_paho_persistent_session_offline_delivery(broker, proto):
    """clean_session=False: a QoS 1 message published while offline is delivered on reconnect
    (MQTT-3.1.2-4, MQTT-3.1.2-5), and session present is reported for 3.1.1 (MQTT-3.2.2-2)."""
    sub = Paho(broker, "paho-pers", proto, clean_session=False)
    sub.subscribe([("pp/t", 1)])
    sub.stop()
    pub = Paho(broker, "paho-pp", proto)
    try:
        pub.publish("pp/t", b"while away", qos=1)
    finally:
        pub.stop()
    sub = Paho(broker, "paho-pers", proto, clean_session=False)
    try:
        # MQTT 3.1 has no session present flag: that CONNACK byte is reserved (0)
        assert sub.flags.get("session present") == (1 if proto == mqtt.MQTTv311 else 0)
        m = sub.get()
        assert m.payload == b"while away" and m.qos == 1
    finally:
        sub.stop()


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_paho_many_messages_in_order(broker, proto):
    """200 QoS 1 messages through paho arrive complete and in order (MQTT-4.6.0-6)."""
    sub = Paho(broker, "paho-ord", proto)
    pub = Paho(broker, "paho-ordp", proto)
    try:
        sub.subscribe([("po/t", 1)])
        infos = [pub.c.publish("po/t", b"%d" % i, qos=1) for i in range(200)]
        for info in infos:
            info.wait_for_publish(WAIT)
            assert info.is_published()
        got = [int(sub.get().payload) for _ in range(200)]
        assert got == list(range(200))
    finally:
        sub.stop()
        pub.stop()
