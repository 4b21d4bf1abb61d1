"""Byte-exact MQTT for tests: build packets by hand, read what the broker sends.

Independent of hato's own codec on purpose, so a codec bug cannot hide
itself. Packets are built from explicit fields; anything can be malformed
by passing raw bytes to RawClient.send.
"""

import select
import socket
import struct
import time

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)

# MQTT 5 property ids and their types.
P_BYTE, P_U16, P_U32, P_VARINT, P_STR, P_BIN, P_PAIR = range(7)
PROPS = {
    0x01: ("payload_format", P_BYTE), 0x02: ("message_expiry", P_U32),
    0x03: ("content_type", P_STR), 0x08: ("response_topic", P_STR),
    0x09: ("correlation_data", P_BIN), 0x0B: ("subscription_id", P_VARINT),
    0x11: ("session_expiry", P_U32), 0x12: ("assigned_client_id", P_STR),
    0x13: ("server_keep_alive", P_U16), 0x15: ("auth_method", P_STR),
    0x16: ("auth_data", P_BIN), 0x17: ("request_problem_info", P_BYTE),
    0x18: ("will_delay", P_U32), 0x19: ("request_response_info", P_BYTE),
    0x1A: ("response_info", P_STR), 0x1C: ("server_reference", P_STR),
    0x1F: ("reason_string", P_STR), 0x21: ("receive_maximum", P_U16),
    0x22: ("topic_alias_maximum", P_U16), 0x23: ("topic_alias", P_U16),
    0x24: ("maximum_qos", P_BYTE), 0x25: ("retain_available", P_BYTE),
    0x26: ("user_property", P_PAIR), 0x27: ("maximum_packet_size", P_U32),
    0x28: ("wildcard_sub_available", P_BYTE), 0x29: ("sub_id_available", P_BYTE),
    0x2A: ("shared_sub_available", P_BYTE),
}
PROP_IDS = {name: (pid, typ) for pid, (name, typ) in PROPS.items()}


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s(text):
    """UTF-8 string with its 2-byte length."""
    b = text.encode() if isinstance(text, str) else bytes(text)
    return struct.pack("!H", len(b)) + b


def props(items=None):
    """Encode MQTT 5 properties from a list of (name, value) pairs, in order.

    user_property values are (key, value) tuples; names may repeat."""
    body = bytearray()
    for name, value in (items or []):
        pid, typ = PROP_IDS[name]
        body += varint(pid)
        if typ == P_BYTE:
            body += bytes([value])
        elif typ == P_U16:
            body += struct.pack("!H", value)
        elif typ == P_U32:
            body += struct.pack("!I", value)
        elif typ == P_VARINT:
            body += varint(value)
        elif typ in (P_STR, P_BIN):
            body += s(value)
        else:
            body += s(value[0]) + s(value[1])
    return varint(len(body)) + bytes(body)


def packet(ptype, flags, body):
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + bytes(body)


def connect(client_id="", version=4, clean=True, keepalive=60, will=None, username=None,
            password=None, properties=None):
    """CONNECT. will = dict(topic, payload, qos=0, retain=False, properties=[])."""
    name = b"MQIsdp" if version == 3 else b"MQTT"
    flags = 0x02 if clean else 0
    payload = s(client_id)
    if will:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
        if version == 5:
            payload += props(will.get("properties"))
        payload += s(will["topic"]) + s(will["payload"])
    if username is not None:
        flags |= 0x80
        payload += s(username)
    if password is not None:
        flags |= 0x40
        payload += s(password)
    body = s(name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        body += props(properties)
    return packet(CONNECT, 0, body + payload)


def publish(topic, payload=b"", qos=0, retain=False, dup=False, pid=None, version=4,
            properties=None):
    flags = (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    body = s(topic)
    if qos:
        body += struct.pack("!H", pid if pid is not None else 1)
    if version == 5:
        body += props(properties)
    if isinstance(payload, str):
        payload = payload.encode()
    return packet(PUBLISH, flags, body + payload)


def ack(ptype, pid, reason=None, properties=None):
    """PUBACK/PUBREC/PUBREL/PUBCOMP; reason/properties only for MQTT 5."""
    body = struct.pack("!H", pid)
    if reason is not None or properties:
        body += bytes([reason or 0])
        if properties:
            body += props(properties)
    return packet(ptype, 2 if ptype == PUBREL else 0, body)


def subscribe(pid, filters, version=4, properties=None):
    """filters: list of (filter, options_byte) or (filter, qos)."""
    body = struct.pack("!H", pid)
    if version == 5:
        body += props(properties)
    for f, opts in filters:
        body += s(f) + bytes([opts])
    return packet(SUBSCRIBE, 2, body)


def unsubscribe(pid, filters, version=4, properties=None):
    body = struct.pack("!H", pid)
    if version == 5:
        body += props(properties)
    for f in filters:
        body += s(f)
    return packet(UNSUBSCRIBE, 2, body)


def pingreq():
    return b"\xc0\x00"


def disconnect(reason=None, properties=None):
    if reason is None and not properties:
        return b"\xe0\x00"
    body = bytes([reason or 0]) + (props(properties) if properties else b"")
    return packet(DISCONNECT, 0, body)


class Packet:
    """A received packet: type, flags, raw body and decoded fields."""

    def __init__(self, ptype, flags, body, version):
        self.type, self.flags, self.body = ptype, flags, body
        self.props = {}
        self.user_props = []
        self.reason = 0
        self.pid = None
        self.codes = []
        self._decode(version)

    def _props(self, b, i):
        n, i = read_varint(b, i)
        end = i + n
        while i < end:
            pid, i = read_varint(b, i)
            name, typ = PROPS[pid]
            if typ == P_BYTE:
                v = b[i]; i += 1
            elif typ == P_U16:
                v = struct.unpack_from("!H", b, i)[0]; i += 2
            elif typ == P_U32:
                v = struct.unpack_from("!I", b, i)[0]; i += 4
            elif typ == P_VARINT:
                v, i = read_varint(b, i)
            elif typ in (P_STR, P_BIN):
                ln = struct.unpack_from("!H", b, i)[0]
                v = bytes(b[i + 2:i + 2 + ln]); i += 2 + ln
                if typ == P_STR:
                    v = v.decode()
            else:
                k, i = read_str(b, i)
                val, i = read_str(b, i)
                self.user_props.append((k, val))
                continue
            if name == "subscription_id":
                self.props.setdefault(name, []).append(v)
            else:
                self.props[name] = v
        return end

    def _decode(self, version):
        b, t = self.body, self.type
        v5 = version == 5
        if t == CONNACK:
            self.session_present = bool(b[0] & 1)
            self.reason = b[1]
            if v5 and len(b) > 2:
                self._props(b, 2)
        elif t == PUBLISH:
            self.qos = (self.flags >> 1) & 3
            self.retain = bool(self.flags & 1)
            self.dup = bool(self.flags & 8)
            ln = struct.unpack_from("!H", b, 0)[0]
            self.topic = bytes(b[2:2 + ln]).decode()
            i = 2 + ln
            if self.qos:
                self.pid = struct.unpack_from("!H", b, i)[0]
                i += 2
            if v5:
                i = self._props(b, i)
            self.payload = bytes(b[i:])
        elif t in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            self.pid = struct.unpack_from("!H", b, 0)[0]
            if len(b) > 2:
                self.reason = b[2]
            if len(b) > 3:
                self._props(b, 3)
        elif t in (SUBACK, UNSUBACK):
            self.pid = struct.unpack_from("!H", b, 0)[0]
            i = 2
            if v5:
                i = self._props(b, i)
            self.codes = list(b[i:])
        elif t in (DISCONNECT, AUTH):
            if len(b) > 0:
                self.reason = b[0]
            if len(b) > 1:
                self._props(b, 1)

    def __repr__(self):
        return f"<Packet type={self.type} flags={self.flags:#x} body={bytes(self.body)!r}>"


def read_varint(b, i):
    mult, val = 1, 0
    while True:
        byte = b[i]
        i += 1
        val += (byte & 0x7F) * mult
        if not byte & 0x80:
            return val, i
        mult *= 128


def read_str(b, i):
    ln = struct.unpack_from("!H", b, i)[0]
    return bytes(b[i + 2:i + 2 + ln]).decode(), i + 2 + ln


class RawClient:
    """A socket speaking raw MQTT bytes to the broker."""

    def __init__(self, broker_or_port, version=4, timeout=5.0, host="127.0.0.1"):
        port = getattr(broker_or_port, "port", broker_or_port)
        host = getattr(broker_or_port, "host", host)
        self.version = version
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data from broker")
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            raise TimeoutError("no data from broker")
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            raise ConnectionError("connection closed by broker")
        self.buf += data

    def recv(self, timeout=None):
        """Next packet from the broker; TimeoutError or ConnectionError otherwise."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            if len(self.buf) >= 2:
                mult, val, i = 1, 0, 1
                complete = False
                while i < len(self.buf) and i <= 4:
                    byte = self.buf[i]
                    val += (byte & 0x7F) * mult
                    mult *= 128
                    i += 1
                    if not byte & 0x80:
                        complete = True
                        break
                if complete and len(self.buf) >= i + val:
                    first = self.buf[0]
                    body = bytes(self.buf[i:i + val])
                    del self.buf[:i + val]
                    return Packet(first >> 4, first & 0xF, body, self.version)
            self._fill(deadline)

    def expect(self, ptype, timeout=None):
        p = self.recv(timeout)
        assert p.type == ptype, f"expected packet type {ptype}, got {p!r}"
        return p

    def expect_nothing(self, timeout=0.3):
        """Assert that no packet arrives within timeout (for 'must not be sent' rules)."""
        try:
            p = self.recv(timeout)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected packet {p!r}")

    def expect_closed(self, timeout=None):
        """Wait until the broker closes the connection; return packets received before."""
        got = []
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                got.append(self.recv(max(0.01, deadline - time.monotonic())))
            except ConnectionError:
                return got
            except TimeoutError:
                raise AssertionError(f"connection still open; received {got!r}")

    def connect(self, client_id="", **kw):
        """Send CONNECT, return the CONNACK packet."""
        kw.setdefault("version", self.version)
        self.send(connect(client_id, **kw))
        return self.expect(CONNACK)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


# ---------------------------------------------------------------------------
# Helpers for the MQTT 3.1/3.1.1 core tests (added; nothing above changed).

def connect_raw(client_id=b"", name=b"MQTT", level=4, flags=0x02, keepalive=60, extra=b""):
    """CONNECT from explicit fields, for malformed variants: client_id is raw bytes
    (length-prefixed here), extra is appended to the payload verbatim."""
    cid = client_id.encode() if isinstance(client_id, str) else bytes(client_id)
    body = s(name) + bytes([level, flags]) + struct.pack("!H", keepalive)
    return packet(CONNECT, 0, body + s(cid) + bytes(extra))


def connected_client(broker_or_port, client_id="", version=4, timeout=5.0, **kw):
    """A RawClient that sent CONNECT and got CONNACK rc 0 (kept as .connack)."""
    c = RawClient(broker_or_port, version=version, timeout=timeout)
    ack = c.connect(client_id, **kw)
    assert ack.reason == 0, f"CONNACK refused: {ack!r}"
    c.connack = ack
    return c


def subscribe_ok(client, pid, filters, version=None):
    """SUBSCRIBE and wait for its SUBACK (checked for the same packet id); return it."""
    client.send(subscribe(pid, filters, version=version or client.version))
    p = client.expect(SUBACK)
    assert p.pid == pid, f"SUBACK pid {p.pid} != {pid}"
    return p


def publish_ok(client, topic, payload=b"", qos=0, pid=1, retain=False):
    """Publish from client and complete the sender side of the QoS flow."""
    client.send(publish(topic, payload, qos=qos, retain=retain, pid=pid, version=client.version))
    if qos == 1:
        p = client.expect(PUBACK)
        assert p.pid == pid
    elif qos == 2:
        p = client.expect(PUBREC)
        assert p.pid == pid
        client.send(ack(PUBREL, pid))
        p = client.expect(PUBCOMP)
        assert p.pid == pid


def recv_publish(client, timeout=None, complete=True):
    """Receive one PUBLISH; if complete, answer it (PUBACK, or PUBREC/PUBREL/PUBCOMP)."""
    p = client.expect(PUBLISH, timeout)
    if complete and p.qos == 1:
        client.send(ack(PUBACK, p.pid))
    elif complete and p.qos == 2:
        client.send(ack(PUBREC, p.pid))
        rel = client.expect(PUBREL, timeout)
        assert rel.pid == p.pid and rel.flags == 2, f"bad PUBREL {rel!r}"
        client.send(ack(PUBCOMP, p.pid))
    return p


def unix_client(path, version=4, timeout=5.0):
    """A RawClient connected over a Unix domain socket."""
    c = RawClient.__new__(RawClient)
    c.version = version
    c.timeout = timeout
    c.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.sock.settimeout(timeout)
    c.sock.connect(path)
    c.buf = bytearray()
    return c


# ---------------------------------------------------------------------------
# MQTT 5 test helpers (added for the tests/integration/test_v5_*.py suite).

def sub_opts(qos=0, no_local=False, retain_as_published=False, retain_handling=0):
    """MQTT 5 Subscription Options byte (bits: QoS, No Local, RAP, Retain Handling)."""
    return qos | (4 if no_local else 0) | (8 if retain_as_published else 0) | (retain_handling << 4)


def v5_client(broker_or_port, client_id="", timeout=5.0, **connect_kw):
    """Open an MQTT 5 RawClient and CONNECT it; return (client, connack)."""
    c = RawClient(broker_or_port, version=5, timeout=timeout)
    connack = c.connect(client_id, **connect_kw)
    return c, connack


def v5_subscriber(broker_or_port, client_id, filters, properties=None, **connect_kw):
    """MQTT 5 client subscribed to filters [(filter, options)]; checks SUBACK."""
    c, _ = v5_client(broker_or_port, client_id, **connect_kw)
    c.send(subscribe(1, filters, version=5, properties=properties))
    ack_ = c.expect(SUBACK)
    assert all(code < 0x80 for code in ack_.codes), f"SUBACK refused: {ack_.codes}"
    return c


def drain(client, quiet=0.3, limit=1000):
    """Packets until none arrives for `quiet` seconds (bounded by `limit`)."""
    out = []
    while len(out) < limit:
        try:
            out.append(client.recv(quiet))
        except TimeoutError:
            break
    return out


def closed_by_broker(client, timeout=None):
    """Wait for the broker to close; return the packets received before, or
    raise AssertionError if the connection stays open."""
    return client.expect_closed(timeout)
