"""MQTT 5.0 CONNECT / CONNACK: reason codes, CONNACK properties, assigned
client identifiers, Server Keep Alive, enhanced-authentication refusal and
Request Problem Information.

Rule ids are the normative statements of the MQTT 5.0 OASIS Standard
(e.g. MQTT-3.2.2-16); where the spec states a requirement without a numbered
statement the test name carries the section number instead (e.g. 3_15).
"""

import pytest

from mqttraw import (AUTH, CONNACK, DISCONNECT, PUBACK, PUBCOMP, PUBREC, PUBREL, SUBACK,
                     UNSUBACK, RawClient, ack, connect, packet, publish, subscribe,
                     unsubscribe, v5_client)


def test_connack_success_and_default_properties_MQTT_3_2_2_2_MQTT_3_2_2_9(broker):
    c, ca = v5_client(broker, "defaults")
    assert ca.reason == 0x00
    assert ca.body[0] == 0, "Connect Acknowledge Flags: reserved bits and Session Present 0"
    # Receive Maximum: absent means 65535, but if present it must be > 0.
    assert ca.props.get("receive_maximum", 65535) > 0
    # hato (like mosquitto) accepts topic aliases 1..10 by default.
    assert ca.props.get("topic_alias_maximum") == 10
    # Absent means "available"; a present value must say 1 for the default config.
    for name in ("retain_available", "wildcard_sub_available", "sub_id_available",
                 "shared_sub_available"):
        assert ca.props.get(name, 1) == 1, name
    # The server supports QoS 2: Maximum QoS (whose only legal values, 0 and 1,
    # announce a limit) must be absent.
    assert "maximum_qos" not in ca.props
    assert "server_keep_alive" not in ca.props, "no max_keepalive configured"
    assert "assigned_client_id" not in ca.props, "client supplied its own id"
    c.close()


@pytest.mark.parametrize("level", [6, 255])
def test_unknown_protocol_level_refused_and_closed_MQTT_3_1_2_2(broker, level):
    # The server cannot know which CONNACK format a client of an unknown
    # version understands; like mosquitto, hato answers in 3.1.1 form with
    # return code 1 (unacceptable protocol version) and closes.
    c = RawClient(broker, version=4)
    c.send(connect("lvl", version=level))
    got = c.expect_closed()
    assert len(got) == 1 and got[0].type == CONNACK, got
    assert got[0].body == b"\x00\x01", got[0]
    c.close()


@pytest.mark.parametrize("clean", [True, False])
def test_empty_client_id_gets_assigned_identifier_MQTT_3_2_2_16_MQTT_3_1_3_7(broker, clean):
    c1, ca1 = v5_client(broker, "", clean=clean, properties=[("session_expiry", 0)])
    c2, ca2 = v5_client(broker, "", clean=clean)
    assert ca1.reason == 0 and ca2.reason == 0
    id1 = ca1.props.get("assigned_client_id")
    id2 = ca2.props.get("assigned_client_id")
    assert id1 and id2, (ca1.props, ca2.props)
    assert id1 != id2, "an Assigned Client Identifier must not be used by another session"
    assert not ca1.session_present
    # Both connections work: c1 subscribes, c2 publishes to it.
    c1.send(subscribe(1, [("assigned/t", 0)], version=5))
    c1.expect(SUBACK)
    c2.send(publish("assigned/t", b"hi", version=5))
    assert c1.expect(3).payload == b"hi"
    c1.close()
    c2.close()


def test_assigned_identifier_is_the_session_identifier_MQTT_3_1_3_7(broker):
    # "process the CONNECT packet as if the Client had provided that unique
    # ClientID": reconnecting with the assigned id resumes that session.
    c, ca = v5_client(broker, "", clean=True, properties=[("session_expiry", 60)])
    cid = ca.props["assigned_client_id"]
    c.send(subscribe(1, [("assigned/resume", 1)], version=5))
    c.expect(SUBACK)
    c.send(b"\xe0\x00")
    c.expect_closed()
    c2, ca2 = v5_client(broker, cid, clean=False, properties=[("session_expiry", 60)])
    assert ca2.session_present, "session of the assigned client id was not kept"
    assert "assigned_client_id" not in ca2.props
    c2.close()


def test_server_keep_alive_when_max_keepalive_lowers_it_MQTT_3_2_2_21(broker_factory):
    b = broker_factory("max_keepalive 30\n")
    c, ca = v5_client(b, "ka60", keepalive=60)
    assert ca.reason == 0
    assert ca.props.get("server_keep_alive") == 30, ca.props
    c.close()


def test_no_server_keep_alive_when_client_value_is_within_limit_MQTT_3_2_2_22(broker_factory):
    b = broker_factory("max_keepalive 30\n")
    c, ca = v5_client(b, "ka10", keepalive=10)
    assert ca.reason == 0
    # Either absent (the client's value is used) or equal to it.
    assert ca.props.get("server_keep_alive", 10) == 10, ca.props
    c.close()


def test_unsupported_authentication_method_connack_0x8c_MQTT_4_12_0_1(broker):
    c = RawClient(broker, version=5)
    c.send(connect("authm", version=5, properties=[("auth_method", "SCRAM-SHA-1"),
                                                   ("auth_data", b"client-first")]))
    got = c.expect_closed()
    assert len(got) == 1 and got[0].type == CONNACK, got
    assert got[0].reason == 0x8C
    assert not got[0].session_present, "MQTT-3.2.2-6: Session Present 0 on failure"
    c.close()


def test_refused_connect_does_not_process_following_data_MQTT_3_1_4_6(broker):
    # A PUBLISH pipelined behind a refused CONNECT must not be processed.
    watcher, _ = v5_client(broker, "watch-refused")
    watcher.send(subscribe(1, [("refused/#", 0)], version=5))
    watcher.expect(SUBACK)
    c = RawClient(broker, version=5)
    c.send(connect("refused", version=5, properties=[("auth_method", "NOPE")])
           + publish("refused/t", b"leak", version=5))
    got = c.expect_closed()
    assert got and got[0].type == CONNACK and got[0].reason == 0x8C
    watcher.expect_nothing(0.3)
    watcher.close()


def test_request_problem_information_0_no_reason_string_on_acks_MQTT_3_1_2_29(broker):
    c, ca = v5_client(broker, "rpi0", properties=[("request_problem_info", 0)])
    assert ca.reason == 0
    # Provoke non-success reason codes on PUBACK, PUBREC, PUBCOMP, UNSUBACK
    # and a SUBACK: none of these may carry a Reason String or User Property.
    c.send(publish("rpi/none", b"x", qos=1, pid=1, version=5))
    c.send(publish("rpi/none", b"x", qos=2, pid=2, version=5))
    c.send(ack(PUBREL, 2))
    c.send(ack(PUBREL, 999))
    c.send(unsubscribe(3, ["rpi/never"], version=5))
    c.send(subscribe(4, [("rpi/s", 2)], version=5))
    seen = set()
    for _ in range(6):
        p = c.recv()
        seen.add(p.type)
        assert "reason_string" not in p.props, p
        assert not p.user_props, p
    assert seen == {PUBACK, PUBREC, PUBCOMP, UNSUBACK, SUBACK}, seen
    c.close()


def test_auth_packet_without_authentication_method_is_protocol_error_3_15(broker):
    # "It is a Protocol Error for the Client to send an AUTH packet if it did
    # not include an Authentication Method in the CONNECT packet." The broker
    # must close the connection; a DISCONNECT, if sent, says 0x82.
    c, _ = v5_client(broker, "authnomethod")
    c.send(packet(AUTH, 0, b"\x18\x00"))
    got = c.expect_closed()
    assert all(p.type == DISCONNECT and p.reason == 0x82 for p in got), got
    c.close()


@pytest.mark.hato_only("mosquitto 2.0.11 closes without sending DISCONNECT 0x82")
def test_auth_packet_without_method_gets_disconnect_0x82_3_15(broker):
    c, _ = v5_client(broker, "authnomethod2")
    c.send(packet(AUTH, 0, b"\x18\x00"))
    got = c.expect_closed()
    assert [(p.type, p.reason) for p in got] == [(DISCONNECT, 0x82)]
    c.close()
