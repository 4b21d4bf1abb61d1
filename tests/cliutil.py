"""Helpers for the hato-pub / hato-sub / hato-rr tests.

- tool(name): path of a client program built next to HATO_BIN.
- run(...): run a client to completion (always with a timeout), with HOME set
  to a test directory so no real options file is read.
- Sub: a subscriber (hato-sub or mosquitto_sub) in the background. It is known
  to be subscribed when it prints a retained "sync" message published before
  it started: the event the tests wait for instead of sleeping.
- CaptureBroker: a minimal MQTT server on a real loopback (or Unix) socket
  that records the bytes a client sends and answers CONNACK with a chosen
  code. Used where the test must see exactly what the client put on the wire
  (CONNECT flags, user name, password, properties).
"""

import itertools
import os
import select
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import HATO_BIN, SANITIZER_MARKS
from mqttraw import CONNECT, PROPS, RawClient, publish, read_varint

BIN_DIR = os.path.dirname(os.path.abspath(HATO_BIN))
_seq = itertools.count()


def tool(name):
    path = os.path.join(BIN_DIR, name)
    if not os.path.exists(path):
        pytest.skip(f"{name} not built in {BIN_DIR}")
    return path


def client_env(home, extra=None):
    env = dict(os.environ)
    env["HOME"] = str(home)
    for k in ("XDG_CONFIG_HOME", "HATO_PASSWORD"):
        env.pop(k, None)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    if extra:
        env.update(extra)
    return env


def check_sanitizers(stderr):
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    for mark in SANITIZER_MARKS:
        assert mark not in text, "sanitizer report from a client:\n" + text


def run(name, args, home, input=None, timeout=20, env=None, check=None):
    """Run tool `name` (a hato client, or an absolute path) to completion."""
    path = name if os.path.isabs(name) else tool(name)
    r = subprocess.run([path] + [str(a) for a in args], input=input,
                       stdin=None if input is not None else subprocess.DEVNULL,
                       capture_output=True, timeout=timeout, env=client_env(home, env))
    check_sanitizers(r.stderr)
    if check is not None:
        assert r.returncode == check, (f"{name} {args} rc={r.returncode} (want {check}): "
                                       f"stdout={r.stdout!r} stderr={r.stderr!r}")
    return r


def conn_args(broker, version=None):
    a = ["-h", broker.host, "-p", str(broker.port)]
    if version:
        a += ["-V", str(version)]
    return a


def publish_retained_sync(host, port, topic, payload):
    c = RawClient(port, version=4, host=host)
    c.connect(f"sync-{os.getpid()}-{next(_seq)}")
    c.send(publish(topic, payload, qos=1, pid=1, retain=True))
    c.recv()
    c.close()


class Sub:
    """A subscriber process; its stdout collected as bytes."""

    def __init__(self, broker, home, topics, count=None, args=(), program="hato-sub",
                 wait_s=30, env=None, sync=True, sync_mode="payload"):
        self.broker = broker
        path = program if os.path.isabs(program) else tool(program)
        self.out = bytearray()
        self.cond = threading.Condition()
        self.done = False
        cmd = [path] + conn_args(broker) + ["-W", str(wait_s)]
        self.sync_topic = None
        if sync:
            n = next(_seq)
            self.sync_topic = f"sync/{os.getpid()}/{n}"
            # A JSON string, so %J prints it without an error.
            self.sync_payload = f'"ready-{os.getpid()}-{n}"'.encode()
            publish_retained_sync(broker.host, broker.port, self.sync_topic, self.sync_payload)
            cmd += ["-t", self.sync_topic]
        for t in topics:
            cmd += ["-t", t]
        if count is not None:
            cmd += ["-C", str(count + (1 if sync else 0))]
        cmd += [str(a) for a in args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=client_env(home, env))
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if sync and sync_mode == "newline":
            # The sync message is the first thing printed: the first line
            # (for formats that do not print the payload).
            self.wait_for(b"\n")
            with self.cond:
                self.skip = self.out.index(b"\n") + 1
        elif sync:
            self.wait_for(self.sync_payload)
            # Drop everything up to the end of the sync record's line.
            with self.cond:
                i = self.out.index(self.sync_payload) + len(self.sync_payload)
                j = self.out.find(b"\n", i)
                self.skip = j + 1 if j >= 0 else i
        else:
            self.skip = 0

    def _read(self):
        while True:
            data = self.proc.stdout.read1(65536)
            with self.cond:
                if not data:
                    self.done = True
                    self.cond.notify_all()
                    return
                self.out += data
                self.cond.notify_all()

    def wait_for(self, needle, timeout=10):
        deadline = time.monotonic() + timeout
        with self.cond:
            while needle not in self.out:
                left = deadline - time.monotonic()
                if self.done or left <= 0:
                    raise AssertionError(f"subscriber output lacks {needle!r}: {bytes(self.out)!r}"
                                         f" stderr={self.stderr_text()!r}")
                self.cond.wait(left)

    def wait_count(self, needle, n, timeout=15):
        """Wait until needle was printed n times."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while self.out.count(needle) < n:
                left = deadline - time.monotonic()
                if self.done or left <= 0:
                    raise AssertionError(f"subscriber printed {needle!r} fewer than {n} times: "
                                         f"{bytes(self.out)!r}")
                self.cond.wait(left)

    def stderr_text(self):
        if self.proc.poll() is None:
            return ""
        return self.proc.stderr.read().decode("utf-8", "replace")

    @property
    def output(self):
        with self.cond:
            return bytes(self.out[self.skip:])

    def lines(self):
        return self.output.decode("utf-8", "replace").splitlines()

    def finish(self, timeout=45):
        """Wait for exit; return (returncode, output after the sync line, stderr)."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"subscriber did not exit: {bytes(self.out)!r}")
        self.reader.join(timeout=5)
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        self.proc.stdout.close()
        check_sanitizers(err)
        self._unsync()
        return rc, self.output, err.decode("utf-8", "replace")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._unsync()

    def _unsync(self):
        if self.sync_topic:
            publish_retained_sync(self.broker.host, self.broker.port, self.sync_topic, b"")
            self.sync_topic = None


# ---------------------------------------------------------------------------
# CaptureBroker

def _read_str(b, i):
    n = struct.unpack_from("!H", b, i)[0]
    return bytes(b[i + 2:i + 2 + n]), i + 2 + n


def _read_props(b, i):
    n, i = read_varint(b, i)
    end = i + n
    out, user = {}, []
    while i < end:
        pid, i = read_varint(b, i)
        name, typ = PROPS[pid]
        if typ == 0:
            v = b[i]; i += 1
        elif typ == 1:
            v = struct.unpack_from("!H", b, i)[0]; i += 2
        elif typ == 2:
            v = struct.unpack_from("!I", b, i)[0]; i += 4
        elif typ == 3:
            v, i = read_varint(b, i)
        elif typ in (4, 5):
            v, i = _read_str(b, i)
            if typ == 4:
                v = v.decode()
        else:
            k, i = _read_str(b, i)
            val, i = _read_str(b, i)
            user.append((k.decode(), val.decode()))
            continue
        out[name] = v
    if user:
        out["user"] = user
    return out, end


def parse_connect(body):
    """Decode a CONNECT body into a dict (independent of hato's codec)."""
    name, i = _read_str(body, 0)
    level = body[i]
    flags = body[i + 1]
    keepalive = struct.unpack_from("!H", body, i + 2)[0]
    i += 4
    c = {"name": name.decode(), "level": level, "clean": bool(flags & 2),
         "keepalive": keepalive, "props": {}}
    if level == 5:
        c["props"], i = _read_props(body, i)
    cid, i = _read_str(body, i)
    c["client_id"] = cid.decode()
    if flags & 4:
        c["will_qos"] = (flags >> 3) & 3
        c["will_retain"] = bool(flags & 0x20)
        if level == 5:
            c["will_props"], i = _read_props(body, i)
        t, i = _read_str(body, i)
        c["will_topic"] = t.decode()
        c["will_payload"], i = _read_str(body, i)
    if flags & 0x80:
        u, i = _read_str(body, i)
        c["username"] = u.decode()
    if flags & 0x40:
        c["password"], i = _read_str(body, i)
    return c


class CaptureBroker:
    """Accept one client, record its packets, answer like a broker would."""

    def __init__(self, connack_code=0, unix_path=None, answer_connack=True):
        self.code = connack_code
        self.answer_connack = answer_connack
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.host, self.port = "127.0.0.1", 0
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.host, self.port = self.sock.getsockname()
        self.sock.listen(1)
        self.packets = []  # (type, flags, body)
        self.cond = threading.Condition()
        self.closed = False
        self.peer = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        self.sock.settimeout(20)
        try:
            conn, self.peer = self.sock.accept()
        except OSError:
            with self.cond:
                self.closed = True
                self.cond.notify_all()
            return
        conn.settimeout(20)
        buf = bytearray()
        version = 4
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 2:
                    try:
                        n, i = read_varint(buf, 1)
                    except Exception:
                        break
                    if len(buf) < i + n:
                        break
                    t, f, body = buf[0] >> 4, buf[0] & 15, bytes(buf[i:i + n])
                    del buf[:i + n]
                    with self.cond:
                        self.packets.append((t, f, body))
                        self.cond.notify_all()
                    if t == CONNECT:
                        version = parse_connect(body)["level"]
                        if self.answer_connack:
                            extra = b"\x00" if version == 5 else b""
                            conn.sendall(bytes([0x20, 2 + len(extra), 0, self.code]) + extra)
                            if self.code:
                                conn.close()
                                raise StopIteration
                    elif t == 3:  # PUBLISH: ack it
                        qos = (f >> 1) & 3
                        tl = struct.unpack_from("!H", body, 0)[0]
                        if qos:
                            pid = body[2 + tl:4 + tl]
                            conn.sendall(bytes([0x40 if qos == 1 else 0x50, 2]) + pid)
                    elif t == 6:  # PUBREL
                        conn.sendall(bytes([0x70, 2]) + body[:2])
                    elif t == 8:  # SUBSCRIBE: grant what was asked
                        pid = body[:2]
                        i = 2
                        if version == 5:
                            _, i = _read_props(body, i)
                        codes = []
                        while i < len(body):
                            _, i = _read_str(body, i)
                            codes.append(body[i] & 3)
                            i += 1
                        payload = pid + (b"\x00" if version == 5 else b"") + bytes(codes)
                        conn.sendall(bytes([0x90, len(payload)]) + payload)
                    elif t == 12:  # PINGREQ
                        conn.sendall(b"\xd0\x00")
                    elif t == 14:
                        break
        except (StopIteration, OSError):
            pass
        finally:
            conn.close()
            with self.cond:
                self.closed = True
                self.cond.notify_all()

    def wait_closed(self, timeout=15):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.closed:
                left = deadline - time.monotonic()
                assert left > 0, f"client still connected; packets: {self.packets!r}"
                self.cond.wait(left)
        return self.packets

    def connect_packet(self):
        for t, _, body in self.packets:
            if t == CONNECT:
                return parse_connect(body)
        raise AssertionError("no CONNECT received")

    def close(self):
        self.sock.close()


def free_closed_port():
    """A loopback port with nothing listening (for 'connection refused')."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def select_readable(f, timeout):
    return bool(select.select([f], [], [], timeout)[0])
