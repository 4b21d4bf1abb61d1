"""Issue 17: several hato nodes as one broker over a NATS cluster with JetStream,
behind HAProxy. Each test starts its own 3-server NATS cluster and hato nodes
n1..n3 (tests/clusterkit.py: ports, directories, timings), joined by
`cluster_nats_url`, `cluster_name` (unique per test), `node_name` and
`cluster_replicas 3`.

Cross-node interest propagates asynchronously, so before a test measures it
awaits the route with probe messages (clusterkit.await_route), then publishes
and waits for a sentinel (or a count) with a deadline. Probes are left out of
what is compared.
"""

import http.client
import re
import threading
import time

import pytest

from bridgekit import Client, sentinel_wait
from clusterkit import (PahoSubscriber, await_route, cluster,  # noqa: F401
                        deadline_loop, needs_nodes, needs_programs)
from mqttraw import DISCONNECT
from persistkit import Publisher

pytestmark = needs_programs + [
    pytest.mark.hato_only("clustering is hato's"),
    pytest.mark.timeout(180),
]


def payloads(got):
    return [m[1] for m in got]


def publish_all(node, topic, msgs, qos, client_id="pub", ack_timeout=10):
    pub = Client(node, client_id)
    for m in msgs:
        pub.publish(topic, m, qos=qos, ack_timeout=ack_timeout)
    pub.publish(topic, b"END", qos=qos, ack_timeout=ack_timeout)
    pub.close()


# ---------------------------------------------------------------------------
# Routing


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_cross_node_pubsub_in_order_exactly_once(cluster, qos):
    """A publisher on n1, subscribers on n1, n2 and n3: every subscriber gets every
    message once, in the publisher's order (MQTT-4.6.0-5 for QoS 1 and 2; on loopback
    QoS 0 too), and the one on the publisher's own node gets no second copy back from
    the cluster (no echo)."""
    c = cluster(3)
    n1, n2, n3 = c.nodes
    subs = [Client(n, f"sub-{n.name}") for n in (n1, n2, n3)]
    for s in subs:
        s.subscribe("x/t", qos=qos)
    await_route(n1, subs, "x/t")
    msgs = [f"m{i}".encode() for i in range(50)]
    publish_all(n1, "x/t", msgs, qos)
    for s, n in zip(subs, (n1, n2, n3)):
        got = sentinel_wait(s)
        s.poll(0.3)  # a late duplicate of anything (or of END) would show here
        assert payloads(got) == msgs, f"subscriber on {n.name} (QoS {qos}): {payloads(got)}"
        assert payloads(s.data()).count(b"END") == 1, f"on {n.name}: END twice"
        assert all(m[2] == qos for m in got), f"on {n.name}: QoS {[m[2] for m in got]}"
        s.close_settled()


@needs_nodes
def test_topic_too_long_for_a_subject_stays_on_its_node(cluster):
    """A topic whose NATS subject would pass 2048 bytes (700 '%' escape to 2100) is
    delivered on its own node, not to other nodes, and counted in
    $SYS/broker/cluster/messages/refused: refused with a reason, never cut or dropped
    silently; a short topic from the same publisher still crosses."""
    c = cluster(2)
    n1, n2 = c.nodes
    long_topic = "lt/" + "%" * 700
    here, there = Client(n1, "lt-here"), Client(n2, "lt-there")
    for s in (here, there):
        s.subscribe("lt/#", qos=1)
    await_route(n1, [there], "lt/probe")
    pub = Client(n1, "lt-pub")
    pub.publish(long_topic, b"long", qos=1)
    pub.publish("lt/end", b"END", qos=1)
    pub.close()
    assert [m[0] for m in sentinel_wait(here)] == [long_topic]  # up to END
    assert [m[0] for m in sentinel_wait(there)] == []
    v = sys_values(n1, ("$SYS/broker/cluster/messages/refused",),
                   lambda v: v.get("$SYS/broker/cluster/messages/refused", "0") != "0")
    assert v["$SYS/broker/cluster/messages/refused"] == "1"
    n1.wait_log(r"too long for a NATS subject")


def test_hash_wildcard_matches_parent_across_nodes(cluster):
    """MQTT 4.7.1.2: `a/#` also matches `a`; `a/+/c` matches `a/b/c` only (4.7.1.3):
    subscribers on n2 and n3, messages published on n1."""
    c = cluster(3)
    n1, n2, n3 = c.nodes
    s_hash = Client(n2, "hash")
    s_hash.subscribe("a/#", qos=1)
    s_plus = Client(n3, "plus")
    s_plus.subscribe("a/+/c", qos=1)
    s_plus.subscribe("a/end", qos=1)
    await_route(n1, [s_hash], "a/probe")
    await_route(n1, [s_plus], "a/end")
    pub = Client(n1, "pub")
    for t in ("a", "a/b/c", "b/a", "a/b", "ab/c", "a/x/c/d"):
        pub.publish(t, t.encode(), qos=1)
    pub.publish("a/end", b"END", qos=1)
    pub.close()
    assert [m[0] for m in sentinel_wait(s_hash)] == ["a", "a/b/c", "a/b", "a/x/c/d"]
    assert [m[0] for m in sentinel_wait(s_plus)] == ["a/b/c"]


def test_dollar_topics_not_matched_by_leading_wildcards_across_nodes(cluster):
    """MQTT-4.7.2-1: `#` and `+/...` on n2 receive none of n1's `$SYS` topics (n1
    publishes them every second: sys_interval 1) nor `$app/x` published by a client on
    n1, which does reach `$app/#` on n2 (so it did cross); ordinary topics do too."""
    c = cluster(3)
    n1, n2, _ = c.nodes
    wild = Client(n2, "wild")
    wild.subscribe("#", "+/broker/uptime", "+/x", qos=1)
    dollar_sub = Client(n2, "dollar-sub")
    dollar_sub.subscribe("$app/#", qos=1)
    await_route(n1, [wild], "p/1")
    await_route(n1, [dollar_sub], "$app/probe")
    # Two fresh $SYS rounds on n1, seen by a $SYS subscriber of n1's own.
    sys1 = Client(n1, "sys1")
    sys1.subscribe("$SYS/broker/uptime", qos=0)
    sys1.wait_for(lambda t, p: t == "$SYS/broker/uptime", 10)
    sys1.clear()
    sys1.wait_for(lambda t, p: t == "$SYS/broker/uptime", 10)
    sys1.close()
    pub = Client(n1, "dollar-pub")
    pub.publish("$app/x", b"app", qos=1)
    pub.publish("p/end", b"END", qos=1)
    pub.close()
    assert dollar_sub.wait_payload(b"app")[0] == "$app/x"
    before = sentinel_wait(wild)
    wild.poll(0.3)
    dollar = [m for m in wild.got if m[0].startswith("$")]
    assert dollar == [], f"a leading wildcard on n2 got $ topics: {dollar}"
    assert [m[0] for m in before] == [], before


def test_shared_subscription_spans_nodes(cluster):
    """`$share/g/s/t` with one member on n1 and one on n2, 200 QoS 1 messages published
    on n3: each reaches exactly one member overall (MQTT 4.8.2), and both members get
    some."""
    c = cluster(3)
    n1, n2, n3 = c.nodes
    m1, m2 = Client(n1, "member-1"), Client(n2, "member-2")
    for m in (m1, m2):
        m.subscribe("$share/g/s/t", qos=1)
    await_route(n3, [m1, m2], "s/t")
    msgs = [f"s{i}".encode() for i in range(200)]
    pub = Client(n3, "pub")
    for p in msgs:
        pub.publish("s/t", p, qos=1)
    pub.close()
    for _ in deadline_loop(30, "200 shared messages delivered",
                           lambda: f"n1 got {len(m1.data())}, n2 got {len(m2.data())}"):
        m1.poll(0.05)
        m2.poll(0.05)
        if len(m1.data()) + len(m2.data()) >= len(msgs):
            break
    m1.poll(0.3)
    m2.poll(0.3)
    a, b = payloads(m1.data()), payloads(m2.data())
    assert sorted(a + b) == sorted(msgs), \
        f"not exactly once overall: {len(a)} + {len(b)}, duplicates {set(a) & set(b)}"
    assert a and b, f"one member got everything: n1 {len(a)}, n2 {len(b)}"
    for m in (m1, m2):
        m.close_settled()


@pytest.mark.parametrize("back_on", ["n1", "n3"])
def test_shared_qos1_not_lost_when_a_member_drops(cluster, back_on):
    """Issue 17: QoS 1 shared messages are not lost when a member drops. Persistent
    members (clean_session 0) of `$share/g/d/t` on n1 and n2; 200 QoS 1 messages
    published on n3; n1's member reads nothing of them and, once 50 are acknowledged to
    the publisher, its connection goes away without DISCONNECT. It comes back (on n1, or
    on n3: its session moved) and every message the publisher got a PUBACK for reaches
    one of the two members: what was meant for the dropped one is completed when it
    reconnects (MQTT-4.8.2-4), not lost, and not given to the other instead
    (MQTT-4.8.2-5 forbids that only if the session ends; duplicates are allowed)."""
    c = cluster(3)
    n1, n2, n3 = c.nodes
    m1, m2 = Client(n1, "drop-1", clean=False), Client(n2, "drop-2", clean=False)
    for m in (m1, m2):
        m.subscribe("$share/g/d/t", qos=1)
    await_route(n3, [m1, m2], "d/t")
    progress = threading.Condition()
    pub = Publisher(n3.port, "shared", "d/t", qos=1, count=200, window=10, progress=progress)
    pub.start()
    with progress:
        progress.wait_for(lambda: pub.total_acked() >= 50 or not pub.is_alive(), timeout=30)
    m1.close()  # m1 read (and acknowledged) nothing of the flow
    pub.join(timeout=60)
    assert not pub.is_alive() and pub.error is None, f"publisher: {pub.error}"
    acked = set(pub.acked)
    m1 = Client(c.nodes[int(back_on[1]) - 1], "drop-1", clean=False)
    assert m1.connack.session_present, f"drop-1's session is not on {back_on}"
    both = set()
    for _ in deadline_loop(30, "every acknowledged shared message delivered",
                           lambda: f"missing {len(acked - both)}: {sorted(acked - both)[:5]}"):
        m1.poll(0.05)
        m2.poll(0.05)
        both = set(payloads(m1.data() + m2.data()))
        if acked <= both:
            break
    assert m1.data(), "nothing was meant for the dropped member: the test proved nothing"
    for m in (m1, m2):
        m.close_settled()


# ---------------------------------------------------------------------------
# Retained messages


def fresh_retained(node, filt, until, timeout=15):
    """Subscribe fresh clients on node to filt until until(topics->payload) holds for the
    retained messages one receives (each looked at for 0.3 s after its first message)."""
    seen = {}
    for i, _ in enumerate(deadline_loop(timeout, f"retained state on {node.name}",
                                        lambda: f"last seen {seen}")):
        s = Client(node, f"ret-{i}")
        s.subscribe(filt, qos=1)
        s.poll(0.3)
        s.close()
        seen = {m[0]: m[1] for m in s.got if m[3]}
        if until(seen):
            return seen


def test_retained_set_on_one_node_seen_and_cleared_on_others(cluster):
    """A retained message set on n1 is sent to a new subscriber on n3 (MQTT-3.3.1-6);
    an empty retained payload published on n2 clears it for n3 as well (MQTT-3.3.1-10),
    while another retained topic stays."""
    c = cluster(3)
    n1, n2, n3 = c.nodes
    p1 = Client(n1, "ret-pub-1")
    p1.publish("r/keep", b"kept", qos=1, retain=True)
    p1.publish("r/t", b"v1", qos=1, retain=True)
    p1.close()
    seen = fresh_retained(n3, "r/+", lambda s: s.get("r/t") == b"v1" and "r/keep" in s)
    assert seen == {"r/keep": b"kept", "r/t": b"v1"}
    p2 = Client(n2, "ret-pub-2")
    p2.publish("r/t", b"", qos=1, retain=True)
    p2.close()
    seen = fresh_retained(n3, "r/+", lambda s: "r/keep" in s and "r/t" not in s)
    assert seen == {"r/keep": b"kept"}
    # And n1, where it was set, agrees.
    assert fresh_retained(n1, "r/+", lambda s: "r/keep" in s and "r/t" not in s) == \
        {"r/keep": b"kept"}


# ---------------------------------------------------------------------------
# Sessions


@pytest.mark.parametrize("version", [4, 5])
def test_takeover_across_nodes(cluster, version):
    """MQTT-3.1.4-3: a second connection with the same client id, on another node, takes
    over: n1's connection is sent DISCONNECT 0x8E "session taken over" (MQTT 5) and
    closed (3.1.1: closed, no packet); the new one is accepted."""
    c = cluster(3)
    n1, n2, _ = c.nodes
    old = Client(n1, "same-id", version=version)
    new = Client(n2, "same-id", version=version)
    assert new.connack.reason == 0
    got = old.c.expect_closed(timeout=10)
    if version == 5:
        assert [p.type for p in got] == [DISCONNECT], got
        assert got[0].reason == 0x8E, f"DISCONNECT reason {got[0].reason:#x}"
    else:
        assert [p.type for p in got] == [], got
    # The new connection works: a message round trip through it.
    new.subscribe("to/me", qos=1)
    await_route(n2, [new], "to/me")
    new.close()


@pytest.mark.parametrize("version", [4, 5])
def test_persistent_session_moves_to_another_node(cluster, version):
    """A persistent session (3.1.1 clean_session 0; MQTT 5 clean start 0 and session
    expiry 300) subscribed at QoS 1 on n1 disconnects; 20 messages are published on n2
    meanwhile; it reconnects on n3: session present 1 (MQTT-3.2.2-2) and all 20 arrive,
    in order."""
    c = cluster(3)
    n1, n2, n3 = c.nodes
    kw = {"properties": [("session_expiry", 300)]} if version == 5 else {}
    s = Client(n1, "roamer", version=version, clean=False, **kw)
    assert not s.connack.session_present
    s.subscribe("q/t", qos=1)
    await_route(n2, [s], "q/t")
    s.settle()
    s.c.send(bytes([0xE0, 0]))  # DISCONNECT
    s.close()
    n1.wait_log(r"Client roamer .*disconnected")
    msgs = [f"q{i}".encode() for i in range(20)]
    pub = Client(n2, "pub")
    for p in msgs:
        pub.publish("q/t", p, qos=1)
    pub.close()
    s = Client(n3, "roamer", version=version, clean=False, **kw)
    assert s.connack.session_present, "no session on n3"
    for _ in deadline_loop(20, "20 queued messages on n3", lambda: payloads(s.data())):
        s.poll(0.1)
        if len(s.data()) >= len(msgs):
            break
    s.poll(0.3)
    assert payloads(s.data()) == msgs
    s.close_settled()


def node_holding(c, client_id, timeout=10):
    """The node whose log says client_id connected (through haproxy)."""
    for _ in deadline_loop(timeout, f"{client_id} in a node's log", c.logs):
        n = c.node_of(client_id)
        if n:
            return n


@needs_nodes
def test_node_sigkill_during_qos1_flow_loses_no_acknowledged_message(cluster):
    """3 nodes behind haproxy; two persistent QoS 1 subscribers (clean_session 0, fixed
    ids) connected through haproxy; a publisher directly on a node that has no subscriber
    to be killed sends 300 QoS 1 messages; mid-flow the node holding a subscriber is
    SIGKILLed. The subscribers reconnect through haproxy (landing on a live node) and
    every message the publisher got a PUBACK for reaches both (duplicates allowed)."""
    c = cluster(3, haproxy=True)
    h = c.proxies[0]
    subs = [PahoSubscriber(h.port, f"durable-{i}", "k/t", qos=1) for i in range(2)]
    homes = [node_holding(c, s.client_id) for s in subs]
    victim = homes[0]
    pub_node = next(n for n in c.nodes if n is not victim)
    # The route from the publisher's node to both subscribers, whatever node they are on.
    probe_pub = Client(pub_node, "probe-pub")
    for i, _ in enumerate(deadline_loop(20, "probes to both subscribers", c.logs)):
        probe_pub.publish("k/t", b"probe-%d" % i, qos=1)
        if all(any(p.startswith(b"probe-") for p in s.got) for s in subs):
            break
    probe_pub.close()

    progress = threading.Condition()
    pub = Publisher(pub_node.port, "flow", "k/t", qos=1, count=300, window=10,
                    progress=progress)
    pub.start()
    with progress:
        progress.wait_for(lambda: pub.total_acked() >= 100 or not pub.is_alive(), timeout=30)
    assert pub.total_acked() >= 100, f"publisher stalled: {pub.error}\n{c.logs()}"
    victim.kill()
    h.wait_states({victim.name: "DOWN"})
    pub.join(timeout=60)
    assert not pub.is_alive(), "publisher did not finish"
    assert pub.error is None, f"publisher on {pub_node.name}: {pub.error}"
    acked = list(pub.acked)
    assert len(acked) == 300
    # The subscriber that was on the victim came back through haproxy, elsewhere.
    subs[0].wait(lambda: len(subs[0].connacks) >= 2, 30, "reconnection through haproxy")
    assert subs[0].connacks[-1] == (1, 0), f"reconnect CONNACK {subs[0].connacks[-1]}"
    assert c.node_of(subs[0].client_id) is not victim
    for s, home in zip(subs, homes):
        missing = s.wait_for(acked, timeout=60)
        assert not missing, (f"{s.client_id} (on {home.name} at first) lost "
                             f"{len(missing)} acknowledged messages, e.g. {sorted(missing)[:5]}")
    for s in subs:
        s.close()


# ---------------------------------------------------------------------------
# NATS failures


@needs_nodes
def test_nats_server_killed_nodes_reconnect_and_carry_on(cluster):
    """Each nats-server in turn is SIGKILLed (so whichever one a hato node was connected
    to goes away once): the nodes reconnect to the others and a QoS 1 flow n1 -> n2
    carries on, complete and in order (duplicates allowed); the server then comes
    back before the next is killed."""
    c = cluster(3)
    n1, n2, _ = c.nodes
    s = Client(n2, "after-nats-loss")
    s.subscribe("k/t", qos=1)
    await_route(n1, [s], "k/t")
    for i in range(len(c.nats.servers)):
        c.nats.kill(i)
        await_route(n1, [s], "k/t", timeout=30)
        msgs = [f"r{i}-{j}".encode() for j in range(20)]
        # A PUBACK waits for JetStream, whose stream may be electing a new
        # leader (seconds; more under ASan): 30 s each.
        publish_all(n1, "k/t", msgs, qos=1, client_id=f"pub-{i}", ack_timeout=30)
        got = payloads(sentinel_wait(s, timeout=30))
        # QoS 1 is at least once (MQTT 4.3.2): a resend is allowed, a gap or a swap not.
        assert list(dict.fromkeys(got)) == msgs, f"with nats-{i} down: {got}"
        s.clear()
        c.nats.restart(i)
    s.close_settled()


# ---------------------------------------------------------------------------
# Observability


def sys_values(node, topics, until, timeout=20):
    """Subscribe on node to topics and wait until until(values) holds; return values."""
    s = Client(node, f"sysw-{node.name}-{time.monotonic_ns()}")
    s.subscribe(*topics, qos=0)
    vals = {}
    try:
        for _ in deadline_loop(timeout, f"$SYS values on {node.name}", lambda: vals):
            s.poll(0.2)
            for m in s.got:
                vals[m[0]] = m[1].decode()
            if until(vals):
                return vals
    finally:
        s.close()


@needs_nodes
def test_sys_cluster_nodes_and_nats_state(cluster):
    """$SYS/broker/cluster/nodes (live nodes, as text, retained) is 3 on every node and
    2 once n3 has stopped; $SYS/broker/cluster/nats/state is "connected"."""
    c = cluster(3)
    n1, n2, n3 = c.nodes
    topics = ("$SYS/broker/cluster/nodes", "$SYS/broker/cluster/nats/state")
    for n in c.nodes:
        v = sys_values(n, topics, lambda v: v.get(topics[0]) == "3" and
                       v.get(topics[1]) == "connected")
        assert v[topics[1]] == "connected"
    # Retained: a late subscriber gets it at once (within one poll).
    late = Client(n1, "late")
    late.subscribe(topics[0], qos=0)
    m = late.wait_for(lambda t, p: t == topics[0], 3)
    assert m[3], "not retained"
    late.close()
    n3.stop()
    v = sys_values(n1, topics, lambda v: v.get(topics[0]) == "2", timeout=30)
    assert v[topics[0]] == "2"


def metrics(node):
    conn = http.client.HTTPConnection("127.0.0.1", node.mport, timeout=5)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    body = r.read().decode()
    conn.close()
    assert r.status == 200
    out = {}
    for line in body.splitlines():
        mt = re.match(r"^(hato_cluster_\w+)(?:\{[^}]*\})? (\S+)$", line)
        if mt:
            out[mt.group(1)] = out.get(mt.group(1), 0) + float(mt.group(2))
    return out


@needs_nodes
def test_metrics_show_the_cluster(cluster):
    """/metrics (protocol metrics listener): hato_cluster_nats_connected 1,
    hato_cluster_nodes 3, and the message counters move with a cross-node flow
    (sent on the publisher's node, received on the subscriber's)."""
    c = cluster(3, metrics=True)
    n1, n2, _ = c.nodes
    m = {}
    for _ in deadline_loop(20, "cluster metrics", lambda: m):
        m = metrics(n1)
        if m.get("hato_cluster_nats_connected") == 1 and m.get("hato_cluster_nodes") == 3:
            break
    before1, before2 = metrics(n1), metrics(n2)
    s = Client(n2, "metrics-sub")
    s.subscribe("m/t", qos=1)
    await_route(n1, [s], "m/t")
    publish_all(n1, "m/t", [b"a", b"b"], qos=1)
    sentinel_wait(s)
    after1, after2 = metrics(n1), metrics(n2)
    assert after1["hato_cluster_messages_sent_total"] >= \
        before1.get("hato_cluster_messages_sent_total", 0) + 3
    assert after2["hato_cluster_messages_received_total"] >= \
        before2.get("hato_cluster_messages_received_total", 0) + 3
    s.close_settled()


@needs_nodes
def test_nats_credentials(cluster):
    """cluster_nats_user / cluster_nats_password: a NATS cluster that requires them,
    nodes that give them, and cross-node delivery works."""
    c = cluster(0, nats_user="hato", nats_password="s3cret")
    n1 = c.start_node()
    n2 = c.start_node()
    s = Client(n2, "cred-sub")
    s.subscribe("c/t", qos=1)
    await_route(n1, [s], "c/t")
    publish_all(n1, "c/t", [b"one"], qos=1)
    assert payloads(sentinel_wait(s)) == [b"one"]
    s.close_settled()


def test_without_cluster_settings_no_cluster_topics(tmp_path):
    """Without cluster_nats_url hato runs alone exactly as before: no
    $SYS/broker/cluster/... topics over two $SYS rounds (sys_interval 1), and local
    delivery works."""
    from clusterkit import HatoNode
    n = HatoNode(tmp_path, "alone")
    try:
        s = Client(n, "alone-sub")
        s.subscribe("$SYS/broker/cluster/#", "$SYS/broker/uptime", "l/t", qos=0)
        for _ in range(2):
            s.wait_for(lambda t, p: t == "$SYS/broker/uptime", 10)
            s.got = [m for m in s.got if m[0] != "$SYS/broker/uptime"]
        pub = Client(n, "alone-pub")
        pub.publish("l/t", b"local", qos=1)
        pub.close()
        s.wait_payload(b"local")
        assert [m for m in s.got if m[0].startswith("$SYS/broker/cluster")] == []
        s.close()
    finally:
        n.stop()


# ---------------------------------------------------------------------------
# Configuration errors (refused at start-up with a reason, never ignored)


def start_refused(tmp_path, body):
    import subprocess
    from conftest import HATO_BIN, RUN_AS, free_port
    conf = tmp_path / "c.conf"
    conf.write_text(f"{RUN_AS}listener {free_port()} 127.0.0.1\n{body}")
    r = subprocess.run([HATO_BIN, "-c", str(conf)], capture_output=True, text=True, timeout=20,
                       stdin=subprocess.DEVNULL)
    assert r.returncode != 0, f"started with:\n{body}"
    return conf, (3 if RUN_AS else 2), r.stderr


@pytest.mark.parametrize("key", ["cluster_name", "node_name"])
def test_bad_cluster_name_refused_with_its_line(tmp_path, key):
    """A cluster or node name is a NATS token and part of stream names: anything but
    1..64 of A-Z a-z 0-9 - _ stops start-up at its file:line."""
    conf, line, err = start_refused(
        tmp_path, f"cluster_nats_url nats://127.0.0.1:1\n{key} a.b\n")
    assert f"{conf}:{line + 1}: {key} 'a.b': 1 to 64 of A-Z a-z 0-9 - _" in err


@pytest.mark.parametrize("body", ["cluster_name c1\n", "node_name n1\n", "cluster_replicas 3\n",
                                  "cluster_nats_user u\n"])
def test_cluster_settings_without_url_refused(tmp_path, body):
    """A cluster directive without cluster_nats_url would do nothing: refused."""
    _, _, err = start_refused(tmp_path, body)
    assert "cluster_* and node_name settings need cluster_nats_url" in err


def test_persistence_with_cluster_refused(tmp_path):
    """persistence true and a cluster do not go together (docs/cluster.md): refused."""
    _, _, err = start_refused(tmp_path, f"persistence true\npersistence_location {tmp_path}\n"
                              "cluster_nats_url nats://127.0.0.1:1\n")
    assert "persistence true with cluster_nats_url" in err


def test_nats_unreachable_stops_start_up(tmp_path):
    """No NATS server at cluster_nats_url: start-up stops with the URL and the reason
    (a node that cannot join its cluster does not pretend to be one)."""
    from conftest import free_port
    port = free_port()
    _, _, err = start_refused(tmp_path, f"cluster_nats_url nats://127.0.0.1:{port}\n")
    assert f"cannot connect to NATS at nats://127.0.0.1:{port}" in err
