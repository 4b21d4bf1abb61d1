"""A raw WebSocket client for byte-exact tests of hato's WebSocket listeners
(RFC 6455): the opening handshake with any headers, frames built by hand
(masked or not, fragmented, control frames, reserved bits), and reading
frames and the close code back. WsMqtt wraps it so tests/mqttraw.py packets
can be sent over a WebSocket and read back as MQTT packets.
"""

import base64
import hashlib
import os
import socket
import ssl
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def frame(op, payload=b"", fin=True, mask=True, rsv=0, length=None, key=None):
    """One frame; length overrides the payload length field (for lies)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    if n < 126:
        head = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
    else:
        head = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
    if not mask:
        return head + payload
    key = key or os.urandom(4)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


class HttpResponse:
    def __init__(self, raw):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split(" ")[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.setdefault(name.strip().lower(), value.strip())

    def header(self, name):
        return self.headers.get(name.lower())


class WsRaw:
    """A socket to a WebSocket listener; nothing is sent until asked."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, tls_ca=None, source=None):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        if tls_ca:
            ctx = ssl.create_default_context(cafile=tls_ca)
            ctx.check_hostname = False
            self.sock = ctx.wrap_socket(self.sock)
        self.timeout = timeout
        self.buf = b""
        self.host = f"{host}:{port}"

    # ---- HTTP ----------------------------------------------------------

    def request_bytes(self, path="/mqtt", key=None, version="13", protocol="mqtt",
                      extra=None, method="GET", omit=()):
        self.key = key or base64.b64encode(os.urandom(16)).decode()
        headers = [("Host", self.host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Key", self.key), ("Sec-WebSocket-Version", version)]
        if protocol:
            headers.append(("Sec-WebSocket-Protocol", protocol))
        headers = [h for h in headers if h[0] not in omit]
        headers += list(extra or [])
        lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def send(self, data):
        self.sock.sendall(data)

    def read_http(self, timeout=None, head_only=False):
        """The response head and its body (none for a HEAD request: head=True)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        r = HttpResponse(head + b"\r\n\r\n")
        length = r.header("content-length")
        if r.status != 101 and length is not None and not head_only:
            while len(rest) < int(length):
                self.buf = head + b"\r\n\r\n" + rest
                self._fill(deadline)
                head, _, rest = self.buf.partition(b"\r\n\r\n")
            r.body, rest = rest[:int(length)], rest[int(length):]
        self.buf = rest
        return r

    def upgrade(self, **kw):
        self.send(self.request_bytes(**kw))
        r = self.read_http()
        assert r.status == 101, r.status_line
        assert r.header("sec-websocket-accept") == accept_for(self.key)
        return r

    # ---- frames --------------------------------------------------------

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("nothing from the broker in time")
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the broker")
        self.buf += data

    def recv_frame(self, timeout=None):
        """(fin, opcode, payload) of the next frame (server frames are unmasked)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < 2:
            self._fill(deadline)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "RFC6455-5.1: a server must not mask its frames"
        n, off = b1 & 0x7F, 2
        if n == 126:
            while len(self.buf) < 4:
                self._fill(deadline)
            n, off = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            while len(self.buf) < 10:
                self._fill(deadline)
            n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
        while len(self.buf) < off + n:
            self._fill(deadline)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def expect_close(self, code, timeout=None):
        """The broker sends a close frame with this status, then closes."""
        while True:
            fin, op, payload = self.recv_frame(timeout)
            if op == OP_CLOSE:
                break
        got = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        assert got == code, f"close code {got}, expected {code}"
        self.expect_eof(timeout)
        return got

    def expect_eof(self, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while True:
                self._fill(deadline)
        except ConnectionError:
            return
        except (ConnectionResetError, BrokenPipeError):
            return

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class WsMqtt:
    """MQTT packets over a WebSocket: send bytes in binary frames, read
    Packets back from the frames' byte stream (like mqttraw.RawClient)."""

    def __init__(self, port, version=4, timeout=5.0, **kw):
        self.ws = WsRaw(port, timeout=timeout, **kw)
        self.ws.upgrade(protocol="mqttv3.1" if version == 3 else "mqtt")
        self.version = version
        self.timeout = timeout
        self.stream = b""

    def send(self, data, frames=1):
        """data in `frames` binary frames (a message each)."""
        step = max(1, -(-len(data) // frames))
        for i in range(0, len(data), step):
            self.ws.send(frame(OP_BINARY, data[i:i + step]))

    def recv(self, timeout=None):
        import mqttraw
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            if len(self.stream) >= 2:
                try:
                    length, i = mqttraw.read_varint(self.stream, 1)
                except Exception:
                    length, i = None, 0
                if length is not None and len(self.stream) >= i + length:
                    raw, self.stream = self.stream[:i + length], self.stream[i + length:]
                    return mqttraw.Packet(raw[0] >> 4, raw[0] & 0x0F, raw[i:], self.version)
            left = deadline - time.monotonic()
            fin, op, payload = self.ws.recv_frame(max(left, 0.01))
            assert op in (OP_BINARY, OP_CONT), f"MQTT-6.0.0-1: opcode {op} from the broker"
            self.stream += payload

    def expect(self, ptype, timeout=None):
        p = self.recv(timeout)
        assert p.type == ptype, f"expected packet type {ptype}, got {p!r}"
        return p

    def close(self):
        self.ws.close()
