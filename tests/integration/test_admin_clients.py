"""Admin API: clients, sessions and subscriptions (docs/api.md "Clients and sessions").

Real MQTT clients connect to a broker with two worker threads (sessions are
spread over both, so the cross-worker query of src/broker/adminq.c is used),
then the API lists, shows, kicks and deletes them."""

import os
import socket
import subprocess
import time

import pytest

from adminutil import Api, admin_broker
from authutil import Mosquitto
from mqttraw import (DISCONNECT, PUBACK, SUBACK, ack, connected_client, publish_ok, recv_publish,
                     sub_opts, subscribe, subscribe_ok, v5_client)
from persistkit import store_config

WAIT = 10
THREADS = "threads 2\n"


def logged_in(b):
    api = Api(b.aport)
    status, _, doc = api.login()
    assert status == 200, doc
    return api


def get(api, path):
    status, _, doc = api.json("GET", path)
    return status, doc


def poll(fn, what, timeout=WAIT):
    """fn() until truthy, bounded by time and count."""
    deadline = time.monotonic() + timeout
    for _ in range(1000):
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def by_id(doc):
    return {i["client_id"]: i for i in doc["items"]}


def test_clients_list_filters_and_paging(broker_factory, tmp_path):
    """api-clients-list: every session is listed with the contract's fields, sorted by
    client id; search (substring of the id), user and connected filter; limit/offset page
    through the total; a bad limit or connected value is 400."""
    b = admin_broker(broker_factory, tmp_path, extra=THREADS)
    api = logged_in(b)
    clients = [connected_client(b, f"dev-{i:02d}", username="alice" if i % 2 else "bob",
                                keepalive=30 + i) for i in range(8)]
    v5, ack = v5_client(b, "five-1", clean=True)
    assert ack.reason == 0
    subscribe_ok(clients[0], 1, [("a/b", 1), ("c/#", 0)])
    # An offline persistent session.
    off = connected_client(b, "offline-1", clean=False)
    subscribe_ok(off, 1, [("q/1", 1)])
    off.close()
    poll(lambda: get(api, "/api/v1/clients?connected=false")[1]["total"] == 1, "offline-1")

    status, doc = get(api, "/api/v1/clients")
    assert status == 200 and doc["total"] == 10 and doc["offset"] == 0
    ids = [i["client_id"] for i in doc["items"]]
    assert ids == sorted(ids) and len(ids) == 10
    it = by_id(doc)
    d0 = it["dev-00"]
    assert d0["username"] == "bob" and d0["protocol"] == "3.1.1" and d0["keepalive"] == 30
    assert d0["connected"] is True and d0["clean_start"] is True
    assert d0["address"].startswith("127.0.0.1:") and d0["listener_port"] == b.port
    assert d0["subscriptions"] == 2 and d0["queued"] == 0 and d0["inflight"] == 0
    assert abs(d0["connected_at"] - time.time()) < 60
    assert it["five-1"]["protocol"] == "5.0"
    o = it["offline-1"]
    assert o["connected"] is False and o["connected_at"] is None and o["address"] is None
    assert o["subscriptions"] == 1

    status, doc = get(api, "/api/v1/clients?search=dev-0&user=alice")
    assert status == 200 and [i["client_id"] for i in doc["items"]] == [
        "dev-01", "dev-03", "dev-05", "dev-07"]
    status, doc = get(api, "/api/v1/clients?connected=true")
    assert doc["total"] == 9 and "offline-1" not in by_id(doc)
    status, doc = get(api, "/api/v1/clients?connected=false")
    assert [i["client_id"] for i in doc["items"]] == ["offline-1"]

    pages = []
    for off_ in range(0, 10, 3):
        status, doc = get(api, f"/api/v1/clients?limit=3&offset={off_}")
        assert status == 200 and doc["total"] == 10 and doc["offset"] == off_
        assert len(doc["items"]) == min(3, 10 - off_)
        pages += [i["client_id"] for i in doc["items"]]
    assert pages == ids
    status, doc = get(api, "/api/v1/clients?offset=50")
    assert status == 200 and doc["items"] == [] and doc["total"] == 10

    for bad in ("limit=0", "limit=1001", "limit=x", "offset=-1", "connected=maybe"):
        status, doc = get(api, f"/api/v1/clients?{bad}")
        assert status == 400 and "error" in doc, bad
    for c in clients + [v5]:
        c.close()


def test_client_details_and_offline_queue(broker_factory, tmp_path):
    """api-clients-detail: subscriptions with their options, counters, will and expiry;
    an offline persistent session shows its queue depth; an unknown id is 404."""
    b = admin_broker(broker_factory, tmp_path, extra=THREADS)
    api = logged_in(b)
    c, ack = v5_client(b, "detail-1", clean=True,
                       will={"topic": "w/detail", "payload": b"gone"},
                       properties=[("session_expiry", 300)])
    assert ack.reason == 0
    c.send(subscribe(
        1, [("x/+", sub_opts(qos=1, no_local=True, retain_as_published=True,
                             retain_handling=2))],
        version=5, properties=[("subscription_id", 7)]))
    c.expect(SUBACK)
    pub = connected_client(b, "pub-1")
    publish_ok(pub, "x/1", b"hello", qos=1)
    p = recv_publish(c)
    assert p.payload == b"hello"

    status, d = get(api, "/api/v1/clients/detail-1")
    assert status == 200
    assert d["client_id"] == "detail-1" and d["protocol"] == "5.0" and d["will"] is True
    assert d["session_expiry"] == 300 and d["tls"] is False
    assert d["subscription_list"] == [{"filter": "x/+", "qos": 1, "no_local": True,
                                       "retain_as_published": True, "retain_handling": 2,
                                       "identifier": 7}]
    assert d["messages_out"] == 1 and d["messages_in"] == 0
    assert d["bytes_in"] > 0 and d["bytes_out"] > 0
    status, d = get(api, "/api/v1/clients/pub-1")
    assert d["messages_in"] == 1 and d["subscription_list"] == []

    # Offline with queued messages: a QoS 1 subscriber leaves, two messages arrive.
    s = connected_client(b, "queue-1", clean=False)
    subscribe_ok(s, 1, [("qq/#", 1)])
    s.close()
    poll(lambda: get(api, "/api/v1/clients/queue-1")[1]["connected"] is False, "queue-1 off")
    publish_ok(pub, "qq/a", b"1", qos=1, pid=2)
    publish_ok(pub, "qq/b", b"2", qos=1, pid=3)
    d = poll(lambda: (lambda x: x if x["queued"] == 2 else None)(
        get(api, "/api/v1/clients/queue-1")[1]), "queued 2")
    assert d["inflight"] == 0 and d["subscriptions"] == 1 and d["session_expiry"] is None

    status, doc = get(api, "/api/v1/sessions")
    assert status == 200 and doc["total"] == 1
    sess = doc["items"][0]
    assert sess["client_id"] == "queue-1" and sess["queued"] == 2 and sess["expires_at"] is None
    assert sess["subscriptions"] == 1

    status, doc = get(api, "/api/v1/subscriptions")
    subs = {(i["client_id"], i["filter"]): i for i in doc["items"]}
    assert subs[("detail-1", "x/+")]["qos"] == 1 and subs[("queue-1", "qq/#")]["qos"] == 1
    status, doc = get(api, "/api/v1/subscriptions?filter=qq")
    assert doc["total"] == 1 and doc["items"][0]["client_id"] == "queue-1"

    for bad in ("/api/v1/clients/nobody", "/api/v1/clients/queue-%31x"):
        status, doc = get(api, bad)
        assert status == 404 and "error" in doc
    status, doc = get(api, "/api/v1/clients/bad%zz")
    assert status == 400
    c.close()
    pub.close()


def test_shared_subscription_listed_with_its_group(broker_factory, tmp_path):
    """api-subscriptions: a $share/G/F subscription is shown as filter F, share G."""
    b = admin_broker(broker_factory, tmp_path, extra=THREADS)
    api = logged_in(b)
    c = connected_client(b, "sharer")
    subscribe_ok(c, 1, [("$share/grp/s/t", 0), ("plain/t", 1)])
    status, doc = get(api, "/api/v1/subscriptions")
    assert status == 200
    got = sorted((i["filter"], i["share"], i["qos"]) for i in doc["items"])
    assert got == [("plain/t", None, 1), ("s/t", "grp", 0)]
    c.close()


def test_kick_v5_sends_disconnect_0x98_and_keeps_session(broker_factory, tmp_path):
    """api-clients-kick: an MQTT 5 client gets DISCONNECT 0x98 (Administrative action) on
    its socket, no will by default (as Mosquitto's dynamic-security kickClient); the
    persistent session stays (session present on reconnect); audit-logged."""
    b = admin_broker(broker_factory, tmp_path, extra=THREADS)
    api = logged_in(b)
    watch = connected_client(b, "watcher")
    subscribe_ok(watch, 1, [("will/#", 0)])
    c, ack = v5_client(b, "kick-5", clean=False, properties=[("session_expiry", 600)],
                       will={"topic": "will/kick-5", "payload": b"bye"})
    assert ack.reason == 0
    subscribe_ok(c, 1, [("k/t", 1)])
    status, _, doc = api.json("DELETE", "/api/v1/clients/kick-5")
    assert status == 200 and doc == {"disconnected": True}
    got = c.expect_closed()
    assert [(p.type, p.reason) for p in got] == [(DISCONNECT, 0x98)]
    watch.expect_nothing(0.5)
    b.wait_log(r"Admin root-admin from 127\.0\.0\.1:\d+ on port \d+: disconnect client 'kick-5'")
    status, d = get(api, "/api/v1/clients/kick-5")
    assert status == 200 and d["connected"] is False and d["subscriptions"] == 1
    c2, ack = v5_client(b, "kick-5", clean=False, properties=[("session_expiry", 600)])
    assert ack.session_present is True
    c2.close()
    watch.close()


def test_kick_with_will_and_session_delete(broker_factory, tmp_path):
    """api-clients-kick: ?will=true publishes the will as for an abnormal close (EMQX's
    kick does), ?session=delete ends the session: the reconnect has session present 0."""
    b = admin_broker(broker_factory, tmp_path, extra=THREADS)
    api = logged_in(b)
    watch = connected_client(b, "watcher")
    subscribe_ok(watch, 1, [("will/#", 0)])
    c = connected_client(b, "kick-3", clean=False,
                         will={"topic": "will/kick-3", "payload": b"bye"})
    status, _, doc = api.json("DELETE", "/api/v1/clients/kick-3?will=true&session=delete")
    assert status == 200 and doc == {"disconnected": True}
    assert c.expect_closed() == []  # MQTT 3.1.1: just closed
    p = recv_publish(watch)
    assert p.topic == "will/kick-3" and p.payload == b"bye"
    status, _ = get(api, "/api/v1/clients/kick-3")
    assert status == 404
    c = connected_client(b, "kick-3", clean=False)
    assert c.connack.session_present is False
    c.close()
    status, _, doc = api.json("DELETE", "/api/v1/clients/nobody")
    assert status == 404 and "error" in doc
    status, _, doc = api.json("DELETE", "/api/v1/clients/x?session=maybe")
    assert status == 400
    watch.close()


def test_delete_session(broker_factory, tmp_path):
    """api-sessions-delete: an offline session ends as if it expired (its queue dropped,
    the reconnect has session present 0); a connected client is 409; unknown 404."""
    b = admin_broker(broker_factory, tmp_path, extra=THREADS)
    api = logged_in(b)
    s = connected_client(b, "gone-1", clean=False)
    subscribe_ok(s, 1, [("g/#", 1)])
    s.close()
    poll(lambda: get(api, "/api/v1/sessions")[1]["total"] == 1, "offline session")
    live = connected_client(b, "live-1", clean=False)
    status, _, doc = api.json("DELETE", "/api/v1/sessions/live-1")
    assert status == 409 and "error" in doc
    status, _, doc = api.json("DELETE", "/api/v1/sessions/gone-1")
    assert status == 200 and doc == {"deleted": True}
    b.wait_log(r"Admin root-admin from 127\.0\.0\.1:\d+ on port \d+: delete session 'gone-1'")
    status, doc = get(api, "/api/v1/sessions")
    assert doc["total"] == 0
    status, _, doc = api.json("DELETE", "/api/v1/sessions/gone-1")
    assert status == 404
    s = connected_client(b, "gone-1", clean=False)
    assert s.connack.session_present is False
    # Its subscription went with it: nothing for g/x.
    publish_ok(live, "g/x", b"z", qos=1)
    s.expect_nothing(0.3)
    s.close()
    live.close()


def test_many_queries_while_connections_close(broker_factory, tmp_path):
    """adminq: requests whose HTTP connection closes before the answer harm nobody (the
    answer finds no connection); the broker still answers and stops clean (ASan)."""
    b = admin_broker(broker_factory, tmp_path, extra=THREADS)
    api = logged_in(b)
    cs = [connected_client(b, f"c{i}") for i in range(6)]
    for _ in range(20):
        k = socket.create_connection(("127.0.0.1", b.aport), timeout=WAIT)
        k.sendall(f"GET /api/v1/clients HTTP/1.1\r\nHost: x\r\n"
                  f"Cookie: hato_session={api.cookie}\r\n\r\n".encode())
        k.close()
    status, doc = get(api, "/api/v1/clients")
    assert status == 200 and doc["total"] == 6
    for c in cs:
        c.close()


def test_delete_session_removes_it_from_the_store(broker_factory, tmp_path):
    """api-sessions-delete with persistence: the deleted session is gone from the store
    (after a restart it is not restored: session present 0), while another offline
    session, kept, is restored with its queued message."""
    store = tmp_path / "store"
    store.mkdir()
    conf = THREADS + store_config(store)
    b = admin_broker(broker_factory, tmp_path, extra=conf)
    b.wait_log(r"Persistence: restored")
    api = logged_in(b)
    for cid in ("drop-me", "keep-me"):
        c = connected_client(b, cid, clean=False)
        subscribe_ok(c, 1, [(f"p/{cid}", 1)])
        c.close()
    poll(lambda: get(api, "/api/v1/sessions")[1]["total"] == 2, "two offline sessions")
    pub = connected_client(b, "pub")
    publish_ok(pub, "p/keep-me", b"kept", qos=1)
    publish_ok(pub, "p/drop-me", b"dropped", qos=1, pid=2)
    pub.close()
    status, _, doc = api.json("DELETE", "/api/v1/sessions/drop-me")
    assert status == 200 and doc == {"deleted": True}
    b.stop()
    b2 = admin_broker(broker_factory, tmp_path, extra=conf)
    b2.wait_log(r"Persistence: restored")
    api2 = logged_in(b2)
    status, doc = get(api2, "/api/v1/sessions")
    assert [(i["client_id"], i["queued"]) for i in doc["items"]] == [("keep-me", 1)]
    c = connected_client(b2, "drop-me", clean=False)
    assert c.connack.session_present is False
    k = connected_client(b2, "keep-me", clean=False)
    assert k.connack.session_present is True
    assert recv_publish(k).payload == b"kept"
    c.close()
    k.close()


def test_inflight_counts_unacknowledged(broker_factory, tmp_path):
    """api-clients-detail: a QoS 1 message sent and not acknowledged is in flight; the
    PUBACK empties the window (MQTT-4.3.2-1 area: the sender keeps it until then)."""
    b = admin_broker(broker_factory, tmp_path, extra=THREADS)
    api = logged_in(b)
    s = connected_client(b, "slow-1")
    subscribe_ok(s, 1, [("i/#", 1)])
    pub = connected_client(b, "pub-i")
    publish_ok(pub, "i/1", b"x", qos=1)
    p = recv_publish(s, complete=False)
    status, d = get(api, "/api/v1/clients/slow-1")
    assert status == 200 and d["inflight"] == 1 and d["queued"] == 0
    s.send(ack(PUBACK, p.pid))
    poll(lambda: get(api, "/api/v1/clients/slow-1")[1]["inflight"] == 0, "inflight 0")
    s.close()
    pub.close()


DYNSEC = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
CTRL = "/usr/bin/mosquitto_ctrl"


def kick_scenario(port, kick, readmit):
    """The client side of an administrative kick, the same script for both brokers: what
    the kicked MQTT 5 client receives, whether its will reaches a watcher (decided by a
    marker the watcher publishes after the close: one broker orders the will first), and
    whether its persistent session survives."""
    obs = []
    watch = connected_client(port, "watcher", username="w", password="wpw")
    obs.append(("watcher suback", subscribe_ok(watch, 1, [("will/#", 0)]).codes))
    k, ack_ = v5_client(port, "k5", clean=False, username="dev", password="devpw",
                        properties=[("session_expiry", 600)],
                        will={"topic": "will/k5", "payload": b"bye"})
    obs.append(("k5 connack", ack_.reason))
    k.send(subscribe(1, [("will/k5-own", 1)], version=5))
    obs.append(("k5 suback", k.expect(SUBACK).codes))
    kick()
    obs.append(("k5 before close", [(p.type, getattr(p, "reason", None))
                                    for p in k.expect_closed(WAIT)]))
    k.close()
    publish_ok(watch, "will/marker", b"m", qos=0)
    first = recv_publish(watch, WAIT)
    obs.append(("will published", first.topic == "will/k5"))
    readmit()
    k2, ack2 = v5_client(port, "k5", clean=False, username="dev", password="devpw",
                         properties=[("session_expiry", 600)])
    obs.append(("k5 again", ack2.reason, ack2.session_present))
    k2.close()
    watch.close()
    return obs


def test_kick_same_as_mosquitto_dynsec(broker_factory, tmp_path):
    """api-clients-kick: hato's DELETE /api/v1/clients/ID does to the client what
    Mosquitto's administrative kick does (its dynamic-security plugin's disableClient,
    mosquitto_kick_client_by_username without the will): the same packets before the
    close, no will, the session kept."""
    if not (os.path.exists(DYNSEC) and os.path.exists(CTRL)):
        pytest.skip("needs mosquitto-clients (mosquitto_ctrl) and the dynamic-security plugin")
    js = tmp_path / "dynsec.json"
    r = subprocess.run([CTRL, "dynsec", "init", str(js), "admin", "adminpw"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    mosq = Mosquitto(tmp_path, f"allow_anonymous false\nplugin {DYNSEC}\n"
                               f"plugin_opt_config_file {js}\n")

    def ctrl(*args):
        r = subprocess.run([CTRL, "-h", "127.0.0.1", "-p", str(mosq.port), "-u", "admin", "-P",
                            "adminpw", "dynsec", *args], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, (args, r.stdout, r.stderr)

    try:
        ctrl("createRole", "r")
        for acl in ("publishClientSend", "subscribePattern"):
            ctrl("addRoleACL", "r", acl, "will/#", "allow")
        for user, pw in (("dev", "devpw"), ("w", "wpw")):
            ctrl("createClient", user, "-p", pw)
            ctrl("addClientRole", user, "r")
        expected = kick_scenario(mosq.port, lambda: ctrl("disableClient", "dev"),
                                 lambda: ctrl("enableClient", "dev"))
    finally:
        mosq.stop()
    b = admin_broker(broker_factory, tmp_path, extra=THREADS)
    api = logged_in(b)

    def kick():
        status, _, doc = api.json("DELETE", "/api/v1/clients/k5")
        assert status == 200, doc

    got = kick_scenario(b.port, kick, lambda: None)
    assert got == expected
    seen = {o[0]: o[1:] for o in expected}
    assert seen["k5 before close"] == ([(DISCONNECT, 0x98)],)
    assert seen["will published"] == (False,)
