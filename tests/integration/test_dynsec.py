"""Acceptance: Debian's mosquitto_dynamic_security.so loaded into hato, managed
with Debian's mosquitto_ctrl, behaves on live connections as it does in Debian's
mosquitto (docs/plugins.md).

The same scenario runs against hato and against a real mosquitto started here
with the same plugin and a configuration file made the same way; every
observation (connection results, SUBACK codes, whether a publish reached a
subscriber, whether a live connection was kicked, mosquitto_ctrl's output) is
recorded and the two lists must be identical. A few observations are also
pinned, so that two brokers that both ignored the plugin would not pass.

Whether a message was delivered is decided without waiting for silence: the
publisher sends a marker after it, on a topic both may use, and the
subscriber's first marker tells whether the message came before it (one
publisher to one subscriber keeps its order).
"""

import itertools
import os
import queue
import subprocess
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from authutil import Mosquitto

PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
CTRL = "/usr/bin/mosquitto_ctrl"
TIMEOUT = 10

pytestmark = pytest.mark.skipif(
    not (os.path.exists(PLUGIN) and os.path.exists(CTRL) and os.path.exists("/usr/sbin/mosquitto")),
    reason="needs mosquitto, mosquitto-clients (mosquitto_ctrl) and the dynamic-security plugin")

_ids = itertools.count()


def dynsec_init(path):
    """A fresh dynamic-security.json with the admin user, as a user would make it."""
    r = subprocess.run([CTRL, "dynsec", "init", str(path), "admin", "adminpw"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


class Ctrl:
    """mosquitto_ctrl dynsec ... against one broker, as the admin user."""

    def __init__(self, port):
        self.port = port

    def __call__(self, *args):
        r = subprocess.run([CTRL, "-h", "127.0.0.1", "-p", str(self.port), "-u", "admin", "-P",
                            "adminpw", "dynsec", *args], capture_output=True, text=True,
                           timeout=30)
        return (r.returncode, r.stdout.strip())


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


def delivered(pub, sub, topic):
    """Did pub's QoS 1 PUBLISH to topic reach sub? Decided by a marker sent after it."""
    n = next(_ids)
    token, marker = f"msg-{n}", f"marker-{n}"
    pub.publish(topic, token)
    assert pub.publish(f"marker/{sub.user}", marker) == "acked"
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


def scenario(port):
    """Run the scenario on one broker; returns the list of observations."""
    ctrl = Ctrl(port)
    obs = []
    probes = []

    def step(name, value):
        obs.append((name, value))

    def connect(user, password, **kw):
        p = Probe(port, user, password, **kw)
        probes.append(p)
        return p

    creds = {}  # user -> password, for reconnecting
    subs = {}   # user -> filters to subscribe again after a reconnect
    clients = {}

    def login(user, password):
        creds[user] = password
        p = connect(user, password)
        clients[user] = p
        return p

    def subscribe(user, topic):
        subs.setdefault(user, []).append(topic)
        return clients[user].subscribe(topic)

    def live(*users):
        """After a command: which live connections the broker closed (the
        plugin kicks clients whose roles change); those log in again."""
        for u in users:
            alive = clients[u].alive()
            step(f"{u} alive", alive)
            if not alive:
                clients[u] = connect(u, creds[u])
                step(f"{u} again", clients[u].rc)
                for t in subs.get(u, []):
                    step(f"{u} subscribe {t} again", clients[u].subscribe(t))

    def do(*args):
        """A mosquitto_ctrl command, then the state of every live connection."""
        step(" ".join(args), ctrl(*args))
        live(*clients)

    try:
        # Set-up: a probe role lets the test's markers through.
        for cmd in (("createRole", "probe"),
                    ("addRoleACL", "probe", "publishClientSend", "marker/#", "allow"),
                    ("addRoleACL", "probe", "subscribeLiteral", "marker/#", "allow"),
                    ("createClient", "alice", "-p", "apw"),
                    ("createClient", "bob", "-p", "bpw"),
                    ("createClient", "carol", "-p", "cpw"),
                    ("addClientRole", "alice", "probe"),
                    ("addClientRole", "bob", "probe"),
                    ("addClientRole", "carol", "probe")):
            step(" ".join(cmd), ctrl(*cmd))

        # Logins.
        step("alice wrong password", connect("alice", "nope").rc)
        step("nobody", connect("nobody", "x").rc)
        step("anonymous", connect(None, None).rc)
        step("alice", login("alice", "apw").rc)
        step("bob", login("bob", "bpw").rc)
        step("carol", login("carol", "cpw").rc)
        step("bob subscribe marker/#", subscribe("bob", "marker/#"))

        # Subscribe: the default ACL denies it; a role grants it.
        step("bob subscribe sensors/# (default)", clients["bob"].subscribe("sensors/#"))
        do("createRole", "reader")
        do("addRoleACL", "reader", "subscribePattern", "sensors/#", "allow")
        do("addClientRole", "bob", "reader")
        step("bob subscribe sensors/# (role)", subscribe("bob", "sensors/#"))

        # Publish: denied by default, granted by a role on the live connection.
        step("alice -> sensors/temp (default)", delivered(clients["alice"], clients["bob"], "sensors/temp"))
        do("createRole", "writer")
        do("addRoleACL", "writer", "publishClientSend", "sensors/#", "allow")
        do("addClientRole", "alice", "writer")
        step("alice -> sensors/temp (writer)", delivered(clients["alice"], clients["bob"], "sensors/temp"))

        # Receive: a deny with a higher priority for one topic, then revoked.
        do("addRoleACL", "reader", "publishClientReceive", "sensors/secret", "deny", "5")
        step("alice -> sensors/secret (receive denied)", delivered(clients["alice"], clients["bob"], "sensors/secret"))
        step("alice -> sensors/temp (still allowed)", delivered(clients["alice"], clients["bob"], "sensors/temp"))
        do("removeRoleACL", "reader", "publishClientReceive", "sensors/secret")
        step("alice -> sensors/secret (deny removed)", delivered(clients["alice"], clients["bob"], "sensors/secret"))

        # Revoke the send permission on the live connection.
        do("removeRoleACL", "writer", "publishClientSend", "sensors/#")
        step("alice -> sensors/temp (revoked)", delivered(clients["alice"], clients["bob"], "sensors/temp"))

        # Groups.
        do("createGroup", "team")
        do("addRoleACL", "writer", "publishClientSend", "sensors/#", "allow")
        do("addGroupRole", "team", "writer")
        do("addGroupClient", "team", "carol")
        step("carol -> sensors/x (group)", delivered(clients["carol"], clients["bob"], "sensors/x"))
        do("removeGroupRole", "team", "writer")
        step("carol -> sensors/x (group role removed)", delivered(clients["carol"], clients["bob"], "sensors/x"))

        # Default access.
        do("setDefaultACLAccess", "publishClientSend", "allow")
        step("carol -> sensors/x (default allow)", delivered(clients["carol"], clients["bob"], "sensors/x"))
        step("carol -> other/x (default allow)", clients["carol"].publish("other/x", "x"))
        do("setDefaultACLAccess", "publishClientSend", "deny")
        step("carol -> sensors/x (default deny)", delivered(clients["carol"], clients["bob"], "sensors/x"))
        do("getDefaultACLAccess")

        # Disable, enable, password, delete: the live connection is closed.
        alice = clients["alice"]
        do("disableClient", "alice")
        deadline = time.monotonic() + TIMEOUT
        while not alice.gone.is_set() and time.monotonic() < deadline:
            alice.gone.wait(0.05)
        step("alice kicked by disableClient", alice.gone.is_set())
        step("alice while disabled", connect("alice", "apw").rc)
        do("enableClient", "alice")
        step("alice enabled", connect("alice", "apw").rc)
        creds["bob"] = "newpw"  # a kicked bob logs in again with it
        do("setClientPassword", "bob", "newpw")
        step("bob old password", connect("bob", "bpw").rc)
        step("bob new password", connect("bob", "newpw").rc)
        carol = clients["carol"]
        do("deleteClient", "carol")
        deadline = time.monotonic() + TIMEOUT
        while not carol.gone.is_set() and time.monotonic() < deadline:
            carol.gone.wait(0.05)
        step("carol kicked by deleteClient", carol.gone.is_set())
        step("carol deleted", connect("carol", "cpw").rc)

        # What the plugin reports.
        do("listClients")
        do("listRoles")
        do("getClient", "bob")
        do("getGroup", "team")
        do("getRole", "reader")
    finally:
        for p in probes:
            p.close()
    return obs


def test_dynsec_same_as_mosquitto(broker_factory, tmp_path):
    hato_json = tmp_path / "hato-dynsec.json"
    mosq_json = tmp_path / "mosquitto-dynsec.json"
    dynsec_init(hato_json)
    dynsec_init(mosq_json)
    hato = broker_factory(f"plugin {PLUGIN}\nplugin_opt_config_file {hato_json}\n"
                          "auth_fail_delay 0\n", anonymous=False)
    mosq = Mosquitto(tmp_path, f"allow_anonymous false\nplugin {PLUGIN}\n"
                               f"plugin_opt_config_file {mosq_json}\n")
    try:
        expected = scenario(mosq.port)
    finally:
        mosq.stop()
    got = scenario(hato.port)
    assert got == expected, "\n".join(
        f"{'  ' if g == e else '!!'} {g!r:70.70} | {e!r}" for g, e in zip(got, expected))
    seen = dict(expected)
    # The reference itself did what the plugin is for (the comparison is not empty).
    assert seen["alice wrong password"] == 5 and seen["alice"] == 0
    assert seen["bob subscribe sensors/# (default)"] == 128
    assert seen["bob subscribe sensors/# (role)"] in (0, 1)
    assert seen["alice -> sensors/temp (default)"] is False
    assert seen["alice -> sensors/temp (writer)"] is True
    assert seen["alice -> sensors/secret (receive denied)"] is False
    assert seen["alice kicked by disableClient"] is True
    assert seen["carol kicked by deleteClient"] is True
    # The file was written by the plugin running in hato.
    assert "sensors/#" in hato_json.read_text()
