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

import os
import subprocess
import time

import pytest

from authutil import Mosquitto
from pluginutil import TIMEOUT, Probe, delivered

PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
CTRL = "/usr/bin/mosquitto_ctrl"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(PLUGIN) and os.path.exists(CTRL) and os.path.exists("/usr/sbin/mosquitto")),
    reason="needs mosquitto, mosquitto-clients (mosquitto_ctrl) and the dynamic-security plugin")

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

        # Unsubscribe: the plugin is asked too (default allow; a deny keeps the subscription).
        do("addRoleACL", "reader", "unsubscribeLiteral", "sensors/#", "deny")
        step("bob unsubscribe sensors/# (denied)", clients["bob"].unsubscribe("sensors/#"))
        step("alice -> sensors/temp (unsubscribe denied)",
             delivered(clients["alice"], clients["bob"], "sensors/temp"))
        do("removeRoleACL", "reader", "unsubscribeLiteral", "sensors/#")
        step("bob unsubscribe sensors/# (allowed)", clients["bob"].unsubscribe("sensors/#"))
        step("alice -> sensors/temp (unsubscribed)",
             delivered(clients["alice"], clients["bob"], "sensors/temp"))
        step("bob subscribe sensors/# (back)", clients["bob"].subscribe("sensors/#"))

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
    assert seen["alice -> sensors/temp (unsubscribe denied)"] is True
    assert seen["alice -> sensors/temp (unsubscribed)"] is False
    assert seen["alice kicked by disableClient"] is True
    assert seen["carol kicked by deleteClient"] is True
    # The file was written by the plugin running in hato.
    assert "sensors/#" in hato_json.read_text()
