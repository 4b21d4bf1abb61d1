"""use_username_as_clientid (Mosquitto): the user name is the client id, so a
user has one session whatever client id it sends, and a client without a
user name is refused. Runs against hato and, with HATO_TEST_BROKER=mosquitto,
against Debian's mosquitto: the expectations are Mosquitto's behaviour."""

from mqttraw import (PUBLISH, RawClient, closed_by_broker, connected_client, publish_ok,
                     recv_publish, subscribe_ok, v5_client)

CONF = "use_username_as_clientid true\n"


def test_same_user_different_client_ids_share_one_session(broker_factory):
    """The second connection of user alice takes the first one's session over
    (MQTT-3.1.4-2 applied to the id the broker uses: the user name)."""
    b = broker_factory(CONF)
    first = connected_client(b, "phone", username="alice")
    second = connected_client(b, "laptop", username="alice")
    closed_by_broker(first)
    second.close()


def test_different_users_same_client_id_do_not_collide(broker_factory):
    b = broker_factory(CONF)
    a = connected_client(b, "same", username="alice")
    c = connected_client(b, "same", username="bob")
    subscribe_ok(a, 1, [("t", 0)])
    publish_ok(c, "t", b"x")
    m = recv_publish(a)
    assert m.topic == "t" and m.payload == b"x"  # both still connected
    a.close()
    c.close()


def test_persistent_session_is_found_by_user_name(broker_factory):
    b = broker_factory(CONF)
    a = connected_client(b, "one", username="alice", clean=False)
    subscribe_ok(a, 1, [("q", 1)])
    a.close()
    pub = connected_client(b, "pub", username="carol")
    publish_ok(pub, "q", b"kept", qos=1)
    again = RawClient(b)
    ack = again.connect("two", username="alice", clean=False)
    assert ack.reason == 0 and ack.session_present  # the session of "one"
    m = again.expect(PUBLISH)
    assert m.payload == b"kept"
    again.close()
    pub.close()


def test_no_user_name_refused_v311(broker_factory):
    b = broker_factory(CONF)
    c = RawClient(b)
    ack = c.connect("anon")
    assert ack.reason == 0x05  # not authorised
    closed_by_broker(c)


def test_no_user_name_refused_v5_and_no_assigned_id_when_accepted(broker_factory):
    b = broker_factory(CONF)
    c, ack = v5_client(b, "anon")
    assert ack.reason == 0x87  # Not authorized
    closed_by_broker(c)
    ok, ack = v5_client(b, "mine", username="alice")
    assert ack.reason == 0
    # The client's id was replaced, not assigned for an empty one (MQTT-3.2.2-16
    # concerns an empty id): Mosquitto sends no Assigned Client Identifier.
    assert "assigned_client_id" not in ack.props, ack.props
    ok.close()


def test_listener_without_it_keeps_client_ids(broker_factory):
    b = broker_factory("")
    first = connected_client(b, "phone", username="alice")
    second = connected_client(b, "laptop", username="alice")
    subscribe_ok(first, 1, [("t", 0)])
    publish_ok(second, "t", b"x")
    assert recv_publish(first).payload == b"x"
    first.close()
    second.close()
