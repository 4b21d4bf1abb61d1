"""Helpers for the plugin tests: a paho client on a live connection, and a
delivery check that waits for an event (a marker), never for silence."""

import itertools
import queue
import threading
import time

import paho.mqtt.client as mqtt

TIMEOUT = 10
_ids = itertools.count()


class Probe:
    """A paho client (MQTT 3.1.1) on a live connection."""

    def __init__(self, port, user, password, client_id=None):
        self.port = port
        self.user = user
        self.msgs = queue.Queue()
        self.gone = threading.Event()
        self.connected = threading.Event()
        self.rc = None
        self.acks = {}
        self.cond = threading.Condition()
        cid = client_id or f"{user}-{next(_ids)}"
        c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv311, clean_session=True)
        if user is not None:
            c.username_pw_set(user, password)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda cl, ud, rc: self._set_gone()
        c.on_message = lambda cl, ud, m: self.msgs.put((m.topic, m.payload.decode()))
        c.on_subscribe = self._on_ack
        c.on_unsubscribe = lambda cl, ud, mid: self._on_ack(cl, ud, mid, None)
        c.on_publish = lambda cl, ud, mid: self._on_ack(cl, ud, mid, None)
        self.c = c
        c.connect("127.0.0.1", port, keepalive=30)
        c.loop_start()
        deadline = time.monotonic() + TIMEOUT
        while not (self.connected.is_set() or self.gone.is_set()):
            assert time.monotonic() < deadline, "no CONNACK"
            self.connected.wait(0.05)

    def _on_connect(self, cl, ud, flags, rc):
        self.rc = rc
        if rc == 0:
            self.connected.set()
        else:
            self._set_gone()

    def _set_gone(self):
        self.gone.set()
        with self.cond:
            self.cond.notify_all()

    def _on_ack(self, cl, ud, mid, granted):
        with self.cond:
            self.acks[mid] = granted
            self.cond.notify_all()

    def _wait_ack(self, mid):
        deadline = time.monotonic() + TIMEOUT
        with self.cond:
            while mid not in self.acks:
                if self.gone.is_set():
                    return "gone"
                left = deadline - time.monotonic()
                assert left > 0, f"{self.user}: no acknowledgement"
                self.cond.wait(left)
            return self.acks.pop(mid)

    @property
    def ok(self):
        return self.rc == 0 and not self.gone.is_set()

    def subscribe(self, topic):
        rc, mid = self.c.subscribe(topic, 1)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            return "gone"
        g = self._wait_ack(mid)
        return g if g == "gone" else g[0]

    def unsubscribe(self, topic):
        rc, mid = self.c.unsubscribe(topic)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            return "gone"
        return "gone" if self._wait_ack(mid) == "gone" else "acked"

    def publish(self, topic, payload):
        info = self.c.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return "gone"
        r = self._wait_ack(info.mid)
        return "gone" if r == "gone" else "acked"

    def alive(self):
        """A round trip on the connection: False once the broker closed it."""
        return self.publish("marker/ping", "ping") == "acked"

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()


def delivered(pub, sub, topic, marker_topic=None):
    """Did pub's QoS 1 PUBLISH to topic reach sub? Decided by a marker sent
    after it (to marker_topic, default marker/<sub's user>), which sub must
    be subscribed to."""
    n = next(_ids)
    token, marker = f"msg-{n}", f"marker-{n}"
    pub.publish(topic, token)
    assert pub.publish(marker_topic or f"marker/{sub.user}", marker) == "acked"
    seen = False
    deadline = time.monotonic() + TIMEOUT
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "marker not delivered"
        t, p = sub.msgs.get(timeout=left)
        if p == token:
            seen = True
        if p == marker:
            return seen
