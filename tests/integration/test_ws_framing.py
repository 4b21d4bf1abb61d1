"""WebSocket framing after the upgrade (RFC 6455 section 5, MQTT 5.0
section 6): MQTT's byte stream in binary frames however it is cut, control
frames, the close handshake, and the close status of each violation.
"""

import struct

import pytest

from conftest import free_port
from mqttraw import connected_client, publish_ok
from wsraw import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, WsMqtt, WsRaw,
                   frame)
import mqttraw


def ws_broker(broker_factory, extra=""):
    port, tcp = free_port(), free_port()
    b = broker_factory(f"listener {tcp} 127.0.0.1\nlistener {port} 127.0.0.1\n"
                       f"protocol websockets\n{extra}", listener=False)
    b.ws_port, b.port = port, tcp
    return b


def upgraded(b):
    ws = WsRaw(b.ws_port)
    ws.upgrade()
    return ws


def connack(ws):
    _, op, payload = ws.recv_frame()
    assert op == OP_BINARY and payload[0] == 0x20, payload
    return payload


def test_connect_split_over_two_frames(broker_factory):
    """An MQTT packet may span WebSocket frames (MQTT-6.0.0-2)."""
    b = ws_broker(broker_factory)
    ws = upgraded(b)
    c = mqttraw.connect("split")
    ws.send(frame(OP_BINARY, c[:5]) + frame(OP_BINARY, c[5:]))
    assert connack(ws)[3] == 0
    ws.close()


def test_two_packets_in_one_frame(broker_factory):
    """Several MQTT packets in one frame are all handled."""
    b = ws_broker(broker_factory)
    ws = upgraded(b)
    ws.send(frame(OP_BINARY, mqttraw.connect("two") + mqttraw.pingreq()))
    stream = b""
    while len(stream) < 6:
        _, op, payload = ws.recv_frame()
        stream += payload
    assert stream[:2] == b"\x20\x02" and stream[4:6] == b"\xd0\x00"  # CONNACK, PINGRESP
    ws.close()


def test_rfc6455_5_4_fragmented_message(broker_factory):
    """RFC6455-5.4: a message in a binary frame and continuation frames is one byte stream."""
    b = ws_broker(broker_factory)
    ws = upgraded(b)
    c = mqttraw.connect("frag")
    ws.send(frame(OP_BINARY, c[:3], fin=False) + frame(OP_CONT, c[3:8], fin=False) +
            frame(OP_CONT, c[8:], fin=True))
    assert connack(ws)[3] == 0
    ws.close()


def test_rfc6455_5_5_2_ping_is_answered_with_pong(broker_factory):
    """RFC6455-5.5.2/5.5.3: a ping gets a pong with the same payload, also between fragments."""
    b = ws_broker(broker_factory)
    ws = upgraded(b)
    c = mqttraw.connect("pinger")
    ws.send(frame(OP_BINARY, c[:4], fin=False) + frame(OP_PING, b"are you there") +
            frame(OP_CONT, c[4:]))
    _, op, payload = ws.recv_frame()
    assert (op, payload) == (OP_PONG, b"are you there")
    assert connack(ws)[3] == 0
    ws.send(frame(OP_PONG, b"unsolicited"))  # RFC6455-5.5.3: ignored
    ws.send(frame(OP_BINARY, mqttraw.pingreq()))
    _, op, payload = ws.recv_frame()
    assert payload == b"\xd0\x00"
    ws.close()


@pytest.mark.hato_only("libwebsockets in mosquitto 2.0.11 drops the connection without the close status RFC 6455 asks for")
def test_rfc6455_5_5_1_close_is_echoed(broker_factory):
    """RFC6455-5.5.1: a close frame is answered with a close frame (same code), then the end."""
    b = ws_broker(broker_factory)
    ws = upgraded(b)
    ws.send(frame(OP_BINARY, mqttraw.connect("closer")))
    connack(ws)
    ws.send(frame(OP_CLOSE, struct.pack("!H", 1001) + b"going away"))
    ws.expect_close(1001)
    b.wait_log(r"Client closer .* disconnected")


@pytest.mark.hato_only("libwebsockets in mosquitto 2.0.11 drops the connection without the close status RFC 6455 asks for")
def test_mqtt_6_0_0_1_text_frame_closes(broker_factory):
    """MQTT-6.0.0-1: MQTT travels in binary frames; a text frame closes the connection."""
    b = ws_broker(broker_factory)
    ws = upgraded(b)
    ws.send(frame(OP_TEXT, b"hello"))
    ws.expect_close(1003)


@pytest.mark.hato_only("libwebsockets in mosquitto 2.0.11 drops the connection without the close status RFC 6455 asks for")
def test_rfc6455_5_1_unmasked_client_frame_closes_with_1002(broker_factory):
    """RFC6455-5.1: a client frame that is not masked closes with 1002."""
    b = ws_broker(broker_factory)
    ws = upgraded(b)
    ws.send(frame(OP_BINARY, mqttraw.connect("plain"), mask=False))
    ws.expect_close(1002)
    b.wait_log(r"unmasked client frame")


@pytest.mark.hato_only("libwebsockets in mosquitto 2.0.11 drops the connection without the close status RFC 6455 asks for")
@pytest.mark.parametrize("data,why", [
    (frame(OP_BINARY, b"x", rsv=4), "RFC6455-5.2 reserved bit without an extension"),
    (frame(3, b"x"), "RFC6455-5.2 unknown data opcode"),
    (frame(11, b""), "RFC6455-5.2 unknown control opcode"),
    (frame(OP_CONT, b"x"), "RFC6455-5.4 continuation outside a message"),
    (frame(OP_BINARY, b"x", fin=False) + frame(OP_BINARY, b"y"),
     "RFC6455-5.4 a new message inside a fragmented one"),
    (frame(OP_PING, b"p" * 126), "RFC6455-5.5 control frame over 125 bytes"),
    (frame(OP_PING, b"p", fin=False), "RFC6455-5.5 fragmented control frame"),
    (frame(OP_CLOSE, b"\x03"), "RFC6455-5.5.1 close with a one-byte payload"),
    (frame(OP_CLOSE, struct.pack("!H", 1005)), "RFC6455-7.4.1 1005 must not be sent"),
    (frame(OP_CLOSE, struct.pack("!H", 999)), "RFC6455-7.4.2 code below 1000"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_protocol_violations_close_with_1002(broker_factory, data, why):
    b = ws_broker(broker_factory)
    ws = upgraded(b)
    ws.send(data)
    ws.expect_close(1002)


@pytest.mark.hato_only("the message limit follows max_packet_size in hato")
def test_message_over_the_packet_limit_closes_with_1009(broker_factory):
    """RFC6455-7.4.1 1009: a message larger than max_packet_size allows."""
    b = ws_broker(broker_factory, "max_packet_size 1024\n")
    ws = upgraded(b)
    ws.send(frame(OP_BINARY, b"\x30" + b"\x00" * 2000))
    ws.expect_close(1009)


@pytest.mark.hato_only("libwebsockets in mosquitto 2.0.11 drops the connection without the close status RFC 6455 asks for")
def test_bad_frame_harms_no_one_else(broker_factory):
    """A violating WebSocket client is closed; a subscriber on the same listener goes on."""
    b = ws_broker(broker_factory)
    sub = WsMqtt(b.ws_port)
    sub.send(mqttraw.connect("watcher"))
    sub.expect(mqttraw.CONNACK)
    sub.send(mqttraw.subscribe(1, [("w/#", 1)]))
    sub.expect(mqttraw.SUBACK)
    bad = upgraded(b)
    bad.send(frame(OP_BINARY, b"junk", mask=False))
    bad.expect_close(1002)
    with connected_client(b, "tcp-pub") as p:
        publish_ok(p, "w/1", b"fine", qos=1)
    got = sub.expect(mqttraw.PUBLISH)
    assert got.payload == b"fine"
    sub.close()


def test_large_message_both_ways(broker_factory):
    """A 300 KiB payload from a TCP publisher reaches a WebSocket subscriber whole, and back."""
    b = ws_broker(broker_factory)
    sub = WsMqtt(b.ws_port, timeout=10)
    sub.send(mqttraw.connect("big-sub"))
    sub.expect(mqttraw.CONNACK)
    sub.send(mqttraw.subscribe(1, [("big/#", 0)]))
    sub.expect(mqttraw.SUBACK)
    payload = bytes(range(256)) * 1200
    with connected_client(b, "big-pub") as p:
        publish_ok(p, "big/1", payload)
    got = sub.expect(mqttraw.PUBLISH, timeout=10)
    assert got.payload == payload
    # And from the WebSocket client, in many small frames.
    sub.send(mqttraw.publish("big/2", payload), frames=50)
    got = sub.expect(mqttraw.PUBLISH, timeout=10)
    assert got.payload == payload
    sub.close()


@pytest.mark.hato_only("libwebsockets in mosquitto 2.0.11 drops the connection without the close status RFC 6455 asks for")
def test_broker_disconnect_sends_a_close_frame(broker_factory):
    """A connection the broker ends (MQTT 5 protocol error) gets DISCONNECT, then a close frame."""
    b = ws_broker(broker_factory)
    ws = WsRaw(b.ws_port)
    ws.upgrade()
    ws.send(frame(OP_BINARY, mqttraw.connect("v5", version=5)))
    connack(ws)
    ws.send(frame(OP_BINARY, b"\xf0\x00"))  # AUTH without a method: protocol error
    ops = []
    while True:
        _, op, payload = ws.recv_frame()
        ops.append(op)
        if op == OP_CLOSE:
            break
    assert ops[-1] == OP_CLOSE
    ws.expect_eof()
