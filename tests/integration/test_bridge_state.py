"""Bridges (issue 16): watching a bridge. notifications, notification_topic,
notifications_local_only, $SYS/broker/connection/NAME/state, the default
remote_clientid; address fail-over lists and round_robin.
Run with mosquitto and with hato as the bridging broker (see bridgekit).
"""

import socket

import pytest

from bridgekit import (Client, bridge_block, bridging, nodes, up_out)  # noqa: F401

pytestmark = pytest.mark.hato_only("starts mosquitto and hato itself, both as bridges")


def test_notifications_local_1_then_0_retained(nodes, bridging):
    """notifications (default true): the bridging broker publishes a retained
    "1" on $SYS/broker/connection/<remote_clientid>/state when the link is up
    and "0" when it goes; a subscriber arriving later gets the retained state."""
    remote = nodes.start("mosquitto", name="remote")
    local = nodes.start(bridging, bridge_block(remote, topics=["t/# out 1"]), name="local")
    topic = "$SYS/broker/connection/bridge-b1/state"
    live = Client(local)
    live.subscribe(topic)
    live.wait_payload("1")
    late = Client(local)
    late.subscribe(topic)
    assert late.wait_payload("1")[3] is True, "state is retained"
    live.clear()
    remote.stop(check=False)
    assert live.wait_payload("0", timeout=20)[0] == topic
    later = Client(local)
    later.subscribe(topic)
    assert later.wait_payload("0")[3] is True
    remote.restart()
    assert live.wait_payload("1", timeout=30)[0] == topic


def test_notification_topic_on_remote_with_will(nodes, bridging):
    """notification_topic: the same 1/0 on a topic of our choosing, on the
    remote too: "1" when connected, "0" (the bridge's will) when it is cut off."""
    remote = nodes.start("mosquitto", name="remote")
    rsub = Client(remote)
    rsub.subscribe("site/bridge/up", qos=1)
    local = nodes.start(bridging, bridge_block(remote, topics=["t/# out 1"],
                                               extra="notification_topic site/bridge/up\n"),
                        name="local")
    lsub = Client(local)
    lsub.subscribe("site/bridge/up")
    lsub.wait_payload("1")
    assert rsub.wait_payload("1", timeout=20)[0] == "site/bridge/up"
    rsub.clear()
    local.kill()  # cut off without DISCONNECT: the remote publishes the will
    assert rsub.wait_payload("0", timeout=20)[0] == "site/bridge/up"


def test_notifications_local_only(nodes, bridging):
    """notifications_local_only true: the state goes to local subscribers only."""
    remote = nodes.start("mosquitto", name="remote")
    rsub = Client(remote)
    rsub.subscribe("$SYS/broker/connection/#", "t/#", qos=1)
    local = nodes.start(bridging, bridge_block(remote, topics=["t/# out 1"],
                                               extra="notifications_local_only true\n"),
                        name="local")
    lsub = Client(local)
    lsub.subscribe("$SYS/broker/connection/bridge-b1/state")
    lsub.wait_payload("1")
    up_out(local, remote, rsub=rsub)
    # The state would have been sent before the first probe over the same link.
    Client(local).publish("t/x", "END", qos=1)
    rsub.wait_payload("END")
    assert [m for m in rsub.got if m[0].startswith("$SYS")] == []


def test_notifications_false(nodes, bridging):
    remote = nodes.start("mosquitto", name="remote")
    rsub = Client(remote)
    rsub.subscribe("$SYS/broker/connection/#", "t/#", qos=1)
    local = nodes.start(bridging, bridge_block(remote, topics=["t/# out 1"],
                                               extra="notifications false\n"),
                        name="local")
    lsub = Client(local)
    lsub.subscribe("$SYS/broker/connection/#", "t/#")
    up_out(local, remote, rsub=rsub)
    Client(local).publish("t/x", "END", qos=1)
    rsub.wait_payload("END")
    lsub.wait_payload("END")
    assert [m for m in rsub.got + lsub.got if m[0].startswith("$SYS")] == []


def test_sys_connection_state_default_remote_clientid(nodes, bridging):
    """Without remote_clientid the bridge logs in as <hostname>.<connection
    name>, and its state topic is $SYS/broker/connection/<that>/state."""
    remote = nodes.start("mosquitto", name="remote")
    block = f"\nconnection site1\naddress 127.0.0.1:{remote.port}\ntopic t/# out 1\n"
    local = nodes.start(bridging, block, name="local")
    cid = f"{socket.gethostname()}.site1"
    remote.wait_log(rf"New (client|bridge) connected from .* as {cid} ", timeout=20)
    lsub = Client(local)
    lsub.subscribe(f"$SYS/broker/connection/{cid}/state")
    lsub.wait_payload("1")


# ---------------------------------------------------------------------------
# address host:port host:port ..., round_robin


def dead_port():
    """A loopback port nothing listens on (bound and closed again)."""
    from conftest import free_port
    return free_port()


def test_address_failover_first_dead(nodes, bridging):
    """address with two entries: the first refuses, the bridge uses the second."""
    remote = nodes.start("mosquitto", name="remote")
    addr = f"127.0.0.1:{dead_port()} 127.0.0.1:{remote.port}"
    local = nodes.start(bridging, bridge_block(remote, topics=["t/# out 1"], address=addr),
                        name="local")
    rsub = up_out(local, remote)
    Client(local).publish("t/x", "via-second", qos=1)
    rsub.wait_payload("via-second")


def test_round_robin_false_returns_to_main(nodes, bridging):
    """round_robin false (default): connected to a secondary address, the
    bridge keeps trying the first (main) one and moves back once it is up."""
    main_port = dead_port()
    second = nodes.start("mosquitto", name="second")
    addr = f"127.0.0.1:{main_port} 127.0.0.1:{second.port}"
    local = nodes.start(bridging, bridge_block(second, topics=["t/# out 1"], address=addr),
                        name="local")
    up_out(local, second).close()
    main = nodes.start("mosquitto", port=main_port, name="main")
    msub = Client(main)
    msub.subscribe("t/#")
    main.wait_log(r"New (client|bridge) connected .* as bridge-b1", timeout=60)
    up_out(local, main, rsub=msub)


def test_round_robin_true_moves_on(nodes, bridging):
    """round_robin true: all addresses are equals; when the connected one fails
    the bridge tries the next one (wrapping around to the first)."""
    a_port = dead_port()
    b = nodes.start("mosquitto", name="b")
    addr = f"127.0.0.1:{a_port} 127.0.0.1:{b.port}"
    local = nodes.start(bridging, bridge_block(b, topics=["t/# out 1"], address=addr,
                                               extra="round_robin true\n"), name="local")
    up_out(local, b).close()
    a = nodes.start("mosquitto", port=a_port, name="a")
    b.stop(check=False)
    asub = Client(a)
    asub.subscribe("t/#")
    up_out(local, a, rsub=asub)
