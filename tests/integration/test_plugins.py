"""Mosquitto plugins of hato's own (tests/plugins: interface version 5, and an
auth plugin of version 4) loaded into hato: options, password checks and the
password file after them, ACLs, auth_plugin_deny_special_chars, $CONTROL
topics, kicks, the disconnect, reload and tick events, per-listener plugins,
and the start-up errors (docs/plugins.md). Where Mosquitto can run the same
config, the same script runs against Debian's mosquitto and the results are
compared.
"""

import os
import signal
import subprocess
import time

import pytest

from authutil import Mosquitto, mosquitto_passwd
from conftest import HATO_BIN, RUN_AS, free_port
from pluginutil import TIMEOUT, Probe, delivered

PLUGINS = os.path.join(os.path.dirname(os.path.abspath(HATO_BIN)), "plugins")
V5 = os.path.join(PLUGINS, "test_plugin_v5.so")
V4 = os.path.join(PLUGINS, "test_plugin_v4.so")
BROKEN = os.path.join(PLUGINS, "test_plugin_broken.so")

pytestmark = pytest.mark.skipif(not os.path.exists(V5),
                                reason="test plugins not built (WITH_PLUGINS and the tests)")


def compare(hato_obs, mosq_obs):
    assert hato_obs == mosq_obs, "\n".join(
        f"{'  ' if h == m else '!!'} {h!r:60.60} | {m!r}" for h, m in zip(hato_obs, mosq_obs))


def wait_gone(p):
    deadline = time.monotonic() + TIMEOUT
    while not p.gone.is_set() and time.monotonic() < deadline:
        p.gone.wait(0.05)
    return p.gone.is_set()


# ---- version 5 ------------------------------------------------------------------


def v5_auth_acl(port):
    obs = []
    probes = []

    def connect(user, pw, **kw):
        p = Probe(port, user, pw, **kw)
        probes.append(p)
        return p

    try:
        for user, pw in (("good", "pw"), ("good", "wrong"), ("bad", "pw"), ("fileuser", "filepw"),
                         ("fileuser", "pw"), ("fileuser", "wrong"), ("nobody", "x"),
                         (None, None)):
            obs.append((user, pw, connect(user, pw).rc))
        a = connect("alice", "pw")
        b = connect("bob", "pw")
        obs.append(("sub ok/#", b.subscribe("ok/#")))
        obs.append(("sub deny/#", b.subscribe("deny/#")))
        obs.append(("sub #", b.subscribe("#")))
        obs.append(("ok/x delivered", delivered(a, b, "ok/x", "ok/marker")))
        obs.append(("deny/x delivered", delivered(a, b, "deny/x", "ok/marker")))
        # MOSQ_EVT_MESSAGE: refused, or changed before routing.
        obs.append(("sub drop/#", b.subscribe("drop/#")))
        obs.append(("sub rewritten/#", b.subscribe("rewritten/#")))
        obs.append(("drop/x delivered", delivered(a, b, "drop/x", "ok/marker")))
        a.publish("rewrite/x", "hi")
        a.publish("ok/marker", "end")
        got = []
        while not got or got[-1] != ("ok/marker", "end"):
            got.append(b.msgs.get(timeout=TIMEOUT))
        obs.append(("rewrite/x arrived as", got))
    finally:
        for p in probes:
            p.close()
    return obs


def test_v5_options_auth_acl_as_mosquitto(broker_factory, tmp_path):
    """plugin_opt_* reach the plugin; its password checks come first, the
    password file answers when it defers (MOSQ_ERR_PLUGIN_DEFER); its ACL
    applies to subscribe and delivery."""
    pw = tmp_path / "passwd"
    pw.write_text("")
    mosquitto_passwd("-b", str(pw), "fileuser", "filepw")
    conf = (f"plugin {V5}\nplugin_opt_name one\nplugin_opt_extra a b  c\n"
            f"password_file {pw}\n")
    hato = broker_factory(conf + "auth_fail_delay 0\n", anonymous=False)
    mosq = Mosquitto(tmp_path, "allow_anonymous false\n" + conf)
    try:
        expected = v5_auth_acl(mosq.port)
    finally:
        mosq.stop()
    got = v5_auth_acl(hato.port)
    compare(got, expected)
    assert ("good", "pw", 0) in expected and ("bad", "pw", 5) in expected
    assert ("fileuser", "filepw", 0) in expected and ("fileuser", "wrong", 5) in expected
    assert ("sub deny/#", 128) in expected and ("deny/x delivered", False) in expected
    assert ("drop/x delivered", False) in expected
    assert ("rewrite/x arrived as", [("rewritten/x", "new:hi"), ("ok/marker", "end")]) in expected
    for line in ("test-v5[one]: option name=one", "test-v5[one]: option extra=a b  c"):
        hato.wait_log(line.replace("[", r"\[").replace("]", r"\]"))


def control_and_kick(port):
    obs = []
    probes = []

    def connect(user, pw, **kw):
        p = Probe(port, user, pw, **kw)
        probes.append(p)
        return p

    try:
        watch = connect("watcher", "pw", client_id="watcher")
        obs.append(("watch $CONTROL/#", watch.subscribe("$CONTROL/#")))
        obs.append(("watch test/v5/disconnect", watch.subscribe("test/v5/disconnect")))
        obs.append(("watch ok/marker", watch.subscribe("ok/marker")))
        sender = connect("sender", "pw", client_id="sender")
        victim = connect("victim", "pw", client_id="victim-1")
        # The request goes to the plugin only; its answer to subscribers.
        obs.append(("request", sender.publish("$CONTROL/test-v5/v1", "hello")))
        t, p = watch.msgs.get(timeout=TIMEOUT)
        obs.append(("first message", t, p))
        # An unknown $CONTROL topic: acknowledged, not delivered (Mosquitto).
        obs.append(("unknown control", delivered(sender, watch, "$CONTROL/nobody/v1",
                                                 "ok/marker")))
        # A message for one client: it gets it without a subscription, nobody else does.
        obs.append(("send", sender.publish("$CONTROL/test-v5/v1", "send:victim-1")))
        obs.append(("victim got", victim.msgs.get(timeout=TIMEOUT)))
        seen = []
        while not seen or seen[-1][0] != "$CONTROL/test-v5/v1/response":
            seen.append(watch.msgs.get(timeout=TIMEOUT))
        obs.append(("watcher got", seen))
        obs.append(("kick", sender.publish("$CONTROL/test-v5/v1", "kick:victim")))
        obs.append(("victim kicked", wait_gone(victim)))
        seen = []
        deadline = time.monotonic() + TIMEOUT
        while len(seen) < 2 and time.monotonic() < deadline:
            seen.append(watch.msgs.get(timeout=TIMEOUT))
        obs.append(("after kick", sorted(seen)))
        obs.append(("sender alive", sender.alive()))
    finally:
        for p in probes:
            p.close()
    return obs


def test_control_topics_and_kick_as_mosquitto(broker_factory, tmp_path):
    """A PUBLISH to a $CONTROL/ topic a plugin registered goes to that plugin
    and to no subscriber; the plugin's mosquitto_broker_publish reaches
    subscribers; mosquitto_kick_client_by_username closes the live
    connection, and the disconnect event follows."""
    conf = f"plugin {V5}\nplugin_opt_name ctl\n"
    hato = broker_factory(conf, anonymous=False)
    mosq = Mosquitto(tmp_path, "allow_anonymous false\n" + conf)
    try:
        expected = control_and_kick(mosq.port)
    finally:
        mosq.stop()
    got = control_and_kick(hato.port)
    compare(got, expected)
    assert ("first message", "$CONTROL/test-v5/v1/response", "echo:hello from sender") in expected
    assert ("victim kicked", True) in expected
    assert ("victim got", ("direct/x", "direct")) in expected
    assert ("unknown control", False) in expected


def test_reload_and_tick_events(broker_factory):
    """SIGHUP runs MOSQ_EVT_RELOAD (and a v4 plugin's security_init with
    reload true); worker 0's tick runs MOSQ_EVT_TICK."""
    b = broker_factory(f"plugin {V5}\nplugin_opt_name rt\nauth_plugin {V4}\n")
    w = Probe(b.port, None, None, client_id="watch-rt")
    try:
        assert w.rc == 0
        assert w.subscribe("test/v5/#") == 1
        deadline = time.monotonic() + TIMEOUT
        got = None
        while got != ("test/v5/tick", "ticking"):
            got = w.msgs.get(timeout=max(0.01, deadline - time.monotonic()))
        b.wait_log(r"test-v4: security_init reload=0")
        mark = b.mark()
        b.signal(signal.SIGHUP)
        got = None
        while got != ("test/v5/reload", "reload 1"):
            got = w.msgs.get(timeout=max(0.01, deadline - time.monotonic()))
        b.wait_log(r"test-v5\[rt\]: reload", start=mark)
        b.wait_log(r"test-v4: security_init reload=1", start=mark)
    finally:
        w.close()


# ---- version 4 (auth_plugin) -------------------------------------------------------


def v4_checks(port):
    obs = []
    probes = []

    def connect(user, pw, **kw):
        p = Probe(port, user, pw, **kw)
        probes.append(p)
        return p

    try:
        for user, pw in (("v4user", "v4pw"), ("v4user", "x"), ("other", "v4pw"), (None, None)):
            obs.append((user, pw, connect(user, pw).rc))
        plain = connect("v4user", "v4pw", client_id="plain")
        plus = connect("v4user", "v4pw", client_id="a+b")
        anon_hash = connect(None, None, client_id="c#d")
        for p in (plain, plus, anon_hash):
            obs.append((p.c._client_id.decode(), "ok/x", p.subscribe("ok/x")))
            obs.append((p.c._client_id.decode(), "secret/x", p.subscribe("secret/x")))
    finally:
        for p in probes:
            p.close()
    return obs


@pytest.mark.parametrize("version,deny", [(4, None), (4, "false"), (3, None), (2, None)])
def test_auth_plugin_as_mosquitto(broker_factory, tmp_path, version, deny):
    """auth_plugin of versions 2 to 4 with auth_opt_*: unpwd_check, acl_check,
    and auth_plugin_deny_special_chars (default true: a client id or user
    name with + or # gets no access through the plugin's ACL). Version 2 is
    not asked about subscriptions."""
    lib = os.path.join(PLUGINS, f"test_plugin_v{version}.so")
    conf = f"auth_plugin {lib}\nauth_opt_color blue\n"
    if deny:
        conf += f"auth_plugin_deny_special_chars {deny}\n"
    hato = broker_factory(conf + "auth_fail_delay 0\n")
    mosq = Mosquitto(tmp_path, "allow_anonymous true\n" + conf)
    try:
        expected = v4_checks(mosq.port)
    finally:
        mosq.stop()
    got = v4_checks(hato.port)
    compare(got, expected)
    assert ("v4user", "v4pw", 0) in expected and ("v4user", "x", 5) in expected
    assert (None, None, 0) in expected  # deferred, and anonymous clients are allowed
    assert ("plain", "secret/x", 128 if version > 2 else 1) in expected
    special = ("a+b", "ok/x", 128 if deny is None else 1)  # checked before the version
    assert special in expected
    hato.wait_log(r"test-v4: option color=blue")


# ---- per listener ----------------------------------------------------------------------


def test_per_listener_plugins(broker_factory):
    """per_listener_settings true: each listener's plugin checks its own clients."""
    pa, pb = free_port(), free_port()
    b = broker_factory(f"per_listener_settings true\n"
                       f"listener {pa} 127.0.0.1\nallow_anonymous false\nplugin {V5}\n"
                       f"plugin_opt_name A\n"
                       f"listener {pb} 127.0.0.1\nallow_anonymous false\nauth_plugin {V4}\n"
                       "auth_fail_delay 0\n", listener=False, anonymous=False, port=pa)
    probes = []
    try:
        def rc(port, user, pw):
            p = Probe(port, user, pw)
            probes.append(p)
            return p.rc
        assert rc(pa, "someone", "pw") == 0      # the v5 plugin on A
        assert rc(pb, "someone", "pw") == 5      # not on B
        assert rc(pb, "v4user", "v4pw") == 0     # the v4 plugin on B
        assert rc(pa, "v4user", "v4pw") == 5     # not on A
        on_a = Probe(pa, "x", "pw")
        on_b = Probe(pb, "v4user", "v4pw")
        probes += [on_a, on_b]
        assert on_a.subscribe("deny/x") == 128 and on_a.subscribe("secret/x") == 1
        assert on_b.subscribe("secret/x") == 128 and on_b.subscribe("deny/x") == 1
    finally:
        for p in probes:
            p.close()


# ---- start-up errors -----------------------------------------------------------------------


def start_fails(tmp_path, lines):
    conf = tmp_path / "bad.conf"
    conf.write_text(f"listener {free_port()} 127.0.0.1\n" + RUN_AS + lines)
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1")
    r = subprocess.run([HATO_BIN, "-c", str(conf)], capture_output=True, text=True, timeout=30,
                       env=env)
    assert r.returncode != 0, r.stderr
    assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    return conf, r.stderr


def test_missing_library_stops_startup(tmp_path):
    conf, err = start_fails(tmp_path, f"plugin {tmp_path}/nothing.so\n")
    assert (f"{conf}:{2 + RUN_AS.count(chr(10))}: plugin '{tmp_path}/nothing.so': cannot load "
            f"it: {tmp_path}/nothing.so: cannot open shared object file") in err, err


def test_missing_function_stops_startup(tmp_path):
    conf, err = start_fails(tmp_path, f"plugin {BROKEN}\n")
    line = 2 + RUN_AS.count("\n")
    assert f"{conf}:{line}: plugin '{BROKEN}': no function mosquitto_plugin_init(): " in err, err
    assert "undefined symbol: mosquitto_plugin_init" in err, err


def test_not_a_plugin_stops_startup(tmp_path):
    lib = "/usr/lib/x86_64-linux-gnu/libcjson.so.1"
    conf, err = start_fails(tmp_path, f"plugin {lib}\n")
    assert f"plugin '{lib}': not a Mosquitto plugin" in err, err


def test_plugin_opt_without_plugin_is_a_config_error(tmp_path):
    conf, err = start_fails(tmp_path, "plugin_opt_config_file /x\n")
    assert (f"{conf}:{2 + RUN_AS.count(chr(10))}: plugin_opt_config_file: an option of a plugin, "
            "but no 'plugin' line comes before it") in err, err
