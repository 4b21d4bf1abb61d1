"""Bridges (issue 16): per-connection options. bridge_outgoing_retain,
bridge_max_packet_size, bridge_attempt_unsubscribe, keepalive_interval,
local_clientid, SIGHUP adding and removing a connection.
Run with mosquitto and with hato as the bridging broker (see bridgekit).
"""

import pytest

from bridgekit import (Client, bridge_block, bridging, mosquitto_differs, nodes,  # noqa: F401
                       sentinel_wait, up_out)

pytestmark = pytest.mark.hato_only("starts mosquitto and hato itself, both as bridges")


@pytest.mark.parametrize("outgoing_retain", [True, False])
def test_bridge_outgoing_retain(nodes, bridging, outgoing_retain):
    """bridge_outgoing_retain false: messages go out with the retain flag
    cleared, so the remote does not keep them as retained."""
    remote = nodes.start("mosquitto", name="remote")
    extra = f"bridge_outgoing_retain {'true' if outgoing_retain else 'false'}\n"
    local = nodes.start(bridging, bridge_block(remote, topics=["t/# out 1"], extra=extra),
                        name="local")
    rsub = up_out(local, remote)
    Client(local).publish("t/kept", "retained-value", qos=1, retain=True)
    rsub.wait_payload("retained-value")
    # A sentinel retained directly on the remote; a new subscriber gets the
    # retained messages in the order of its filters: t/kept first, then the sentinel.
    Client(remote).publish("s/end", "END", qos=1, retain=True)
    late = Client(remote)
    late.subscribe("t/kept", "s/end", qos=1)
    late.wait_payload("END")
    got = [(t, p, r) for t, p, _, r in late.got if t == "t/kept"]
    if outgoing_retain:
        assert got == [("t/kept", b"retained-value", True)]
    else:
        assert got == []


def test_bridge_max_packet_size(nodes, bridging):
    """bridge_max_packet_size: a message whose PUBLISH would be larger is not
    sent to the remote; smaller ones are."""
    remote = nodes.start("mosquitto", name="remote")
    local = nodes.start(bridging, bridge_block(remote, topics=["t/# out 1"],
                                               extra="bridge_max_packet_size 300\n"),
                        name="local")
    rsub = up_out(local, remote)
    pub = Client(local)
    pub.publish("t/x", b"s" * 100, qos=1)
    pub.publish("t/x", b"L" * 1000, qos=1)
    pub.publish("t/x", b"s" * 200, qos=1)
    pub.publish("t/x", "END", qos=1)
    got = sentinel_wait(rsub)
    assert [len(p) for _, p, _, _ in got] == [100, 200]
    assert local.running()


@pytest.mark.parametrize("attempt", [True, False])
def test_bridge_attempt_unsubscribe(nodes, bridging, attempt):
    """bridge_attempt_unsubscribe (default true): on connecting, the bridge
    sends UNSUBSCRIBE on the remote for its `out` topics (so a pattern that was
    once `in` stops coming back); false: it does not."""
    remote = nodes.start("mosquitto", name="remote")
    extra = f"bridge_attempt_unsubscribe {'true' if attempt else 'false'}\n"
    local = nodes.start(bridging, bridge_block(remote, topics=["t/# out 1"], extra=extra),
                        name="local")
    up_out(local, remote)
    # The probe went after the UNSUBSCRIBE over the same connection, and the
    # remote logs packets in the order it reads them.
    log = remote.log
    unsub = "Received UNSUBSCRIBE from bridge-b1"
    assert (unsub in log) == attempt, log


def test_bridge_attempt_unsubscribe_stale_in_subscription(nodes, bridging, tmp_path):
    """What bridge_attempt_unsubscribe is for: a bridge session that had t/#
    `in` is restarted with t/# `out` only; its old remote subscription goes,
    so a remote message on t/# no longer comes back into the local broker."""
    d = tmp_path / "remote-db"
    d.mkdir()
    remote = nodes.start("mosquitto", f"persistence true\npersistence_location {d}/\n",
                         name="remote")
    local = nodes.start(bridging, bridge_block(remote, topics=["t/# in 1"],
                                               extra="cleansession false\n"), name="local")
    lsub = Client(local)
    lsub.subscribe("t/#")
    from bridgekit import await_flow
    await_flow(remote, lsub, "t/probe")
    local.stop()
    local.restart(bridge_block(remote, topics=["t/# out 1", "u/# in 1"],
                               extra="cleansession false\n"))
    lsub = Client(local)
    lsub.subscribe("t/#", "u/#")
    await_flow(remote, lsub, "u/probe")
    rpub = Client(remote)
    rpub.publish("t/x", "stale", qos=1)
    rpub.publish("u/x", "END", qos=1)
    lsub.wait_payload("END")
    assert [m for m in lsub.got if m[1] == b"stale"] == []


def test_keepalive_interval(nodes, bridging):
    """keepalive_interval: the keep alive the bridge asks for in CONNECT."""
    remote = nodes.start("mosquitto", name="remote")
    local = nodes.start(bridging, bridge_block(remote, topics=["t/# out 1"],
                                               extra="keepalive_interval 17\n"), name="local")
    remote.wait_log(r"New (client|bridge) connected .* as bridge-b1 \(p\d, c\d, k17", timeout=20)
    up_out(local, remote).close()


def test_sighup_adds_and_removes_connection(nodes, bridging, request):
    """SIGHUP with a connection block added: the new bridge comes up; with it
    removed again: the bridge is closed, the broker keeps running."""
    mosquitto_differs(request, bridging, "SIGHUP does not reload bridges (2.1's "
                      "bridge_reload_type is not in 2.0)")
    remote = nodes.start("mosquitto", name="remote")
    local = nodes.start(bridging, "", name="local")
    m = remote.mark()
    local.reload(bridge_block(remote, topics=["t/# out 1"]))
    remote.wait_log(r"New (client|bridge) connected .* as bridge-b1", timeout=20, start=m)
    up_out(local, remote).close()
    m = remote.mark()
    local.reload("")
    remote.wait_log(r"Client bridge-b1 (closed its connection|disconnected)", timeout=20, start=m)
    c = Client(local)
    c.subscribe("x")
    c.publish("x", "alive", qos=1)
    c.wait_payload("alive")
