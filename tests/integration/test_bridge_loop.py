"""Bridges (issue 16): loop prevention (try_private) and hato as the remote end.

try_private (default true) makes the bridge announce itself in CONNECT (the
0x80 bit of the protocol level, or MQTT 5 no-local subscriptions), so the
remote does not send a bridge's own messages back to it.
"""

import pytest

from bridgekit import (KINDS, Client, await_flow, bridge_block, bridging,  # noqa: F401
                       mark_if_engine_missing, mark_if_remote_missing, mosquitto_differs, nodes,
                       up_in, up_out)
from conftest import free_port

pytestmark = pytest.mark.hato_only("starts mosquitto and hato itself, both as bridges")


def both_ways_once(a, b, sa, sb, topic="loop/x"):
    """One message published on each side; each subscriber must see each exactly
    once. Sentinels go after the data on both sides, twice: an echo or a loop
    would bring copies of the data back before the second sentinel."""
    Client(a).publish(topic, "from-a", qos=1)
    Client(b).publish(topic, "from-b", qos=1)
    for rnd in (1, 2):
        Client(a).publish(topic, f"END{rnd}-a", qos=1)
        Client(b).publish(topic, f"END{rnd}-b", qos=1)
        for s in (sa, sb):
            s.wait_payload(f"END{rnd}-a")
            s.wait_payload(f"END{rnd}-b")
    for name, s in (("a", sa), ("b", sb)):
        data = sorted(p for _, p, _, _ in s.data() if not p.startswith(b"END"))
        assert data == [b"from-a", b"from-b"], f"subscriber on {name}: {s.data()!r}"


@pytest.mark.parametrize("remote_kind", KINDS)
def test_try_private_both_exactly_once(nodes, bridging, remote_kind, request):
    """topic both with try_private: no echo, exactly once on each side. With
    remote_kind hato and bridging mosquitto this is hato as the remote end of a
    Mosquitto bridge."""
    mark_if_engine_missing(request, bridging)
    mark_if_remote_missing(request, remote_kind)
    remote = nodes.start(remote_kind, name="remote")
    local = nodes.start(bridging, bridge_block(remote, topics=["loop/# both 1"],
                                               extra="try_private true\n"), name="local")
    sr = up_out(local, remote, "loop/probe", "loop/#")
    sl = up_in(local, remote, "loop/probe", "loop/#")
    sr.clear()
    sl.clear()
    both_ways_once(local, remote, sl, sr)


@pytest.mark.parametrize("version", ["mqttv311", "mqttv50"])
def test_try_private_hato_remote_of_mosquitto_bridge(nodes, request, version):
    """Mosquitto bridging into hato (hato is the remote), both directions. In
    3.1.1 try_private is the 0x80 bit of the protocol level; in 5.0 it is the
    no-local option of the bridge's subscriptions (nothing new for hato)."""
    if version == "mqttv311":
        mark_if_remote_missing(request, "hato")
    remote = nodes.start("hato", name="remote")
    local = nodes.start("mosquitto", bridge_block(
        remote, topics=["loop/# both 2"], extra=f"bridge_protocol_version {version}\n"),
        name="local")
    sr = up_out(local, remote, "loop/probe", "loop/#")
    sl = up_in(local, remote, "loop/probe", "loop/#")
    sr.clear()
    sl.clear()
    both_ways_once(local, remote, sl, sr)


def test_two_brokers_out_each_way_no_loop(nodes, bridging, request):
    """Two brokers, each with a connection to the other forwarding the same
    topic out: one message published on either side arrives exactly once on
    each side and does not circle between them."""
    mosquitto_differs(request, bridging, "two connections 'out' each way on one topic loop "
                      "forever (hundreds of copies in 2 s, try_private does not stop it)")
    pa, pb = free_port(), free_port()

    class Addr:
        host = "127.0.0.1"

        def __init__(self, port):
            self.port = port

    # hato: bridge_forward_bridged false (ours) on both connections; without
    # it hato forwards what came over a bridge, as Mosquitto does, and this
    # topology loops (test_forward_bridged_chain shows the default).
    extra = "bridge_forward_bridged false\n" if bridging == "hato" else ""
    a = nodes.start(bridging, bridge_block(Addr(pb), "ab", ["loop/# out 1"], extra=extra),
                    port=pa, name="a")
    b = nodes.start(bridging, bridge_block(Addr(pa), "ba", ["loop/# out 1"], extra=extra),
                    port=pb, name="b")
    sa, sb = Client(a), Client(b)
    sa.subscribe("loop/#")
    sb.subscribe("loop/#")
    await_flow(a, sb, "loop/probe")
    await_flow(b, sa, "loop/probe")
    # Let probes still crossing settle: a sentinel each way, then start counting.
    for s, n in ((sa, a), (sb, b)):
        Client(n).publish("loop/x", "SETTLE", qos=1)
    sa.wait_payload("SETTLE")
    sb.wait_payload("SETTLE")
    sa.poll(0.3)
    sb.poll(0.3)
    sa.clear()
    sb.clear()
    both_ways_once(a, b, sa, sb)


@pytest.mark.parametrize("forward", [True, False])
def test_forward_bridged_chain(nodes, forward):
    """A chain a -> b -> c, each connection `out`: by default (as Mosquitto)
    b forwards to c what reached it over a's bridge; with
    bridge_forward_bridged false on b's connection it does not, and what is
    published on b itself still goes to c."""
    c = nodes.start("hato", name="c")
    extra = "" if forward else "bridge_forward_bridged false\n"
    b = nodes.start("hato", bridge_block(c, "bc", ["ch/# out 1"], extra=extra), name="b")
    a = nodes.start("hato", bridge_block(b, "ab", ["ch/# out 1"]), name="a")
    sc = up_out(b, c, "ch/probe-b", "ch/#")
    sb = up_out(a, b, "ch/probe-a", "ch/#")
    Client(a).publish("ch/x", "from-a", qos=1)
    sb.wait_payload("from-a")  # on b: delivered to b's own subscribers either way
    Client(b).publish("ch/x", "END", qos=1)
    sc.wait_payload("END")
    got = [p for _, p, _, _ in sc.data() if p == b"from-a"]
    assert got == ([b"from-a"] if forward else [])
