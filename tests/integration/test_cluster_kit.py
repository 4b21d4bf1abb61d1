"""The cluster test kit itself (tests/clusterkit.py), checked without the cluster
engine: a real 3-server NATS cluster with JetStream (driven over the NATS text
protocol), and Debian's haproxy with PROXY protocol v2 in front of two plain hato
processes (no cluster settings). If these fail, test_cluster.py's failures say
nothing about hato."""

import json

import pytest

from clusterkit import (Haproxy, HatoNode, NatsCluster, PahoSubscriber, create_stream,
                        deadline_loop, needs_programs)

pytestmark = needs_programs + [
    pytest.mark.hato_only("the kit starts hato nodes"),
    pytest.mark.timeout(120),
]


@pytest.fixture
def nats3(tmp_path):
    n = NatsCluster(tmp_path, 3)
    yield n
    print(n.logs())
    n.stop_all()


def js_publish(nats, server, subject, payload):
    """Publish into a stream through `server`; the JetStream ack (JSON) is the reply."""
    c = nats.client(server)
    try:
        return json.loads(c.request(subject, payload))
    finally:
        c.close()


def stream_info(nats, server, name):
    c = nats.client(server)
    try:
        return c.js(f"STREAM.INFO.{name}")
    finally:
        c.close()


def test_nats_cluster_has_jetstream_on_every_server(nats3):
    """Three servers, routes between all, one meta leader; an R3 stream created through
    server 0 has its leader and two current replicas, and a message stored through
    server 2 is counted when asked through server 1."""
    for s in nats3.servers:
        assert s.ready_problem(3) is None
    assert nats3.urls().count("nats://127.0.0.1:") == 3
    r = create_stream(nats3, "KIT", ["kit.>"], replicas=3)
    assert r["config"]["num_replicas"] == 3
    names = {r["cluster"]["leader"]} | {p["name"] for p in r["cluster"]["replicas"]}
    assert names == {"nats-0", "nats-1", "nats-2"}, r["cluster"]
    ack = js_publish(nats3, 2, "kit.a", b"one")
    assert ack.get("stream") == "KIT" and ack.get("seq") == 1, ack
    assert stream_info(nats3, 1, "KIT")["state"]["messages"] == 1


def test_nats_server_killed_and_restarted(nats3):
    """kill(i) is a SIGKILL: the two left keep a quorum (the R3 stream still stores);
    restart(i) brings the server back on the same ports and store, caught up."""
    create_stream(nats3, "KILL", ["kill.>"], replicas=3)
    pid = nats3.servers[1].proc.pid
    nats3.kill(1)
    assert not nats3.servers[1].running()
    assert nats3.servers[1].proc.returncode == -9
    nats3.wait_ready()  # the two survivors, with each other and a meta leader
    acked = None
    # The stream may elect a new leader first: retried, bounded in time.
    for _ in deadline_loop(20, "a message stored with one server down", lambda: acked):
        try:
            acked = js_publish(nats3, 0, "kill.x", b"while one is down")
        except (TimeoutError, ConnectionError) as e:
            acked = repr(e)
            continue
        if "seq" in acked:
            break
    assert acked and acked.get("seq") == 1, acked
    nats3.restart(1)
    assert nats3.servers[1].proc.pid != pid
    create_stream(nats3, "AFTER", ["after.>"], replicas=3, server=1)
    # Server 1 catches up with what was stored while it was down (eventually: polled).
    info = None
    for _ in deadline_loop(20, "server 1 caught up", lambda: info):
        info = stream_info(nats3, 1, "KILL")
        reps = (info.get("cluster") or {}).get("replicas") or []
        if info.get("state", {}).get("messages") == 1 and len(reps) == 2 and \
                all(r.get("current") for r in reps):
            break


def test_haproxy_send_proxy_v2_spreads_over_two_hato_and_drops_a_dead_one(tmp_path):
    """haproxy (roundrobin, send-proxy-v2, check inter 200ms fall 1) in front of two
    plain hato processes listening with enable_proxy_protocol 2: paho clients through
    it land on both; MQTT works through it; once one is SIGKILLed and haproxy has
    marked it DOWN, every new connection goes to the other."""
    a = HatoNode(tmp_path, "a")
    b = HatoNode(tmp_path, "b")
    h = Haproxy(tmp_path, [("a", a.pport), ("b", b.pport)])
    subs = []
    try:
        for i in range(4):
            subs.append(PahoSubscriber(h.port, f"kit-{i}", f"kit/{i}"))
        on_a = [s.client_id for s in subs if a.has_client(s.client_id)]
        on_b = [s.client_id for s in subs if b.has_client(s.client_id)]
        assert sorted(on_a + on_b) == sorted(s.client_id for s in subs), (on_a, on_b)
        assert on_a and on_b, f"roundrobin used one backend only: a={on_a} b={on_b}"
        # The address hato logs is the client's (from the PROXY v2 header).
        a.wait_log(r"is client 127\.0\.0\.1:\d+ \(address from the PROXY header\)")
        # A round trip through haproxy: each subscriber publishes to itself.
        for s in subs:
            s.c.publish(s.topic, b"via haproxy " + s.client_id.encode(), qos=1)
        for s in subs:
            s.wait(lambda s=s: b"via haproxy " + s.client_id.encode() in s.got, 10,
                   "own message back")

        mark = b.mark()
        a.kill()
        h.wait_states({"a": "DOWN", "b": "UP"})
        later = []
        for i in range(4):
            later.append(PahoSubscriber(h.port, f"kit-after-{i}", f"kit/after/{i}"))
        for s in later:
            assert b.has_client(s.client_id, start=mark), f"{s.client_id} not on b:\n{b.log}"
        # The clients that were on a reconnect (paho) and land on b.
        for s in subs:
            if s.client_id in on_a:
                s.wait(lambda s=s: len(s.connacks) >= 2, 20, "reconnection")
                assert b.has_client(s.client_id, start=mark)
        subs += later
    finally:
        for s in subs:
            s.close()
        h.stop()
        print(f"--- haproxy:\n{h.log()}")
        b.stop()
        if not a.killed:
            a.stop()


def test_nats_cluster_with_credentials(tmp_path):
    """NatsCluster(user=, password=): a client without them is refused, the kit's own
    client (which passes them) creates an R3 stream; this is what cluster_nats_user /
    cluster_nats_password are tested against."""
    n = NatsCluster(tmp_path, 3, user="hato", password="s3cret")
    try:
        with pytest.raises(AssertionError, match="Authorization Violation"):
            n.client(1, user=None)
        with pytest.raises(AssertionError, match="Authorization Violation"):
            n.client(1, password="wrong")
        r = create_stream(n, "CRED", ["cred.>"], replicas=3, server=2)
        assert r["config"]["num_replicas"] == 3
    finally:
        print(n.logs())
        n.stop_all()
