"""Cluster test kit (issue 17): a NATS cluster with JetStream, hato nodes joined
over it, and HAProxy in front, all started here on free loopback ports and
stopped by PID.

What runs, per test (each test gets its own everything, in its tmp_path):

- NatsCluster(tmp_path, n=3): n `nats-server` processes (Debian's
  /usr/sbin/nats-server) clustered together (`cluster { routes: [...] }`, a
  route to every other server), JetStream on (`jetstream { store_dir:
  tmp_path/nats-<i>/store, max_mem: 64MB, max_file: 512MB }`). Each server
  has three free ports: client (`urls()`), cluster (routes) and monitoring
  (HTTP: /healthz, /jsz, /routez). Its config is tmp_path/nats-<i>.conf, its
  log tmp_path/nats-<i>.log (appended to across restarts). Ready means, on
  every live server: /healthz?js-enabled-only=true says ok, /routez has a
  route to every other live server and /jsz names a JetStream meta leader.
  Polled every 50 ms with a deadline (30 s by default); no sleep.
- HatoNode: conftest's Broker with the cluster directives (`cluster_nats_url`,
  `cluster_name` unique per test, `node_name n<i>`, `cluster_replicas 3`),
  persistence in tmp_path/n<i>-store/ when not clustered, `sys_interval 1`, a direct MQTT
  listener (.port) and a second one with `enable_proxy_protocol 2` (.pport)
  for HAProxy, optionally a `protocol metrics` listener (.mport).
- Haproxy(tmp_path, backends): Debian's /usr/sbin/haproxy in the foreground
  (-db), TCP mode, balance roundrobin (or leastconn), `send-proxy-v2` to
  each backend with `check inter 200ms fall 1 rise 1 check-send-proxy`, so a
  killed node leaves the pool within about 200 ms; `retries 3` with `option
  redispatch` so a connection sent to a dead node before its check failed goes
  to another. Its state (UP/DOWN per server) is read from its stats socket
  (tmp_path/haproxy-<port>.sock, `show stat`), which is how a test waits for
  a kill to be noticed.

Logs: every process's output is kept (nats-server's in its log file, hato's
in memory) and the tail of each is printed when the fixture ends; pytest
shows it with a failing test only.

Credentials: NatsCluster(user=, password=) adds an `authorization` block to
every server; the nodes then get `cluster_nats_user` / `cluster_nats_password`.

Timings: a 3-server NATS cluster is ready in 1-3 s here; a hato node starts
in well under a second; a killed backend is DOWN in haproxy within ~200 ms.
Every wait in the kit and in the tests is an event with a deadline (pytest
timeout 180 s per cluster test). The tests under tests/integration/test_cluster*.py
use the `cluster` fixture below; test_cluster_kit.py checks the kit itself
against plain hato (no cluster settings) and raw NATS (the JetStream API over
the kit's NatsClient).

Checking the tests themselves: HATO_CLUSTER_KIT_ONE_BROKER=1 makes n1..nk one
plain hato process (the tests that need separate nodes are skipped), so the
routing, retained, takeover and session tests must pass against a single
broker; that is how their logic was checked before the engine existed.

    HATO_BIN=build/hato /usr/bin/python3 -m pytest -q tests/integration/test_cluster.py
    HATO_CLUSTER_KIT_ONE_BROKER=1 HATO_BIN=build/hato /usr/bin/python3 -m pytest -q \
        tests/integration/test_cluster.py
"""

import copy
import csv
import hashlib
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import Broker, LoggedProcess, free_port
from bridgekit import await_flow
from persistkit import Subscriber, store_config

NATS_SERVER = "/usr/sbin/nats-server"  # Debian installs it in sbin
HAPROXY = "/usr/sbin/haproxy"
POLL = 0.05  # seconds between two looks at a process's state

# The marks of every test module that starts these programs.
needs_programs = [
    pytest.mark.skipif(not os.access(NATS_SERVER, os.X_OK),
                       reason="nats-server is not installed (apt-get install nats-server)"),
    pytest.mark.skipif(not os.access(HAPROXY, os.X_OK),
                       reason="haproxy is not installed (apt-get install haproxy)"),
]

# HATO_CLUSTER_KIT_ONE_BROKER=1: every node of a Cluster is one plain hato process
# (no cluster settings). A check of the tests' own logic where one broker must do
# what the cluster does; tests that need separate nodes are skipped (needs_nodes).
ONE_BROKER = os.environ.get("HATO_CLUSTER_KIT_ONE_BROKER") == "1"
needs_nodes = pytest.mark.skipif(ONE_BROKER, reason="needs separate nodes "
                                 "(HATO_CLUSTER_KIT_ONE_BROKER=1)")


def deadline_loop(timeout, what, detail=lambda: ""):
    """Yield until the caller breaks out; AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / POLL) + 100):
        yield
        if time.monotonic() > deadline:
            break
        time.sleep(POLL)  # a poll with a deadline: these processes have no event to await
    raise AssertionError(f"{what} not within {timeout}s\n{detail()}")


def http_json(port, path, timeout=2.0):
    """GET http://127.0.0.1:port/path -> (status, parsed JSON or None); (0, None) when
    nothing answers."""
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
    except OSError:
        return 0, None
    try:
        return r.status, json.loads(body)
    except ValueError:
        return r.status, None


def stop_pid(proc, timeout=10):
    """SIGTERM a process we started (by its PID), SIGKILL if it outlives timeout."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tail(text, lines=60):
    """The last lines of text."""
    return "\n".join(text.splitlines()[-lines:])


def file_tail(path, lines=60):
    """The last lines of the file at path ("" if there is none yet)."""
    try:
        with open(path, errors="replace") as f:
            return tail(f.read(), lines)
    except FileNotFoundError:
        return ""


# ---------------------------------------------------------------------------
# NATS


class NatsServer:
    """One nats-server of a NatsCluster; its ports stay the same across restarts."""

    def __init__(self, tmp_path, index, cluster_name, user=None, password=None):
        self.index = index
        self.name = f"nats-{index}"
        self.port, self.cport, self.mport = free_port(), free_port(), free_port()
        self.cluster_name = cluster_name
        self.user, self.password = user, password
        self.store_dir = os.path.join(str(tmp_path), self.name, "store")
        self.conf_path = os.path.join(str(tmp_path), f"{self.name}.conf")
        self.log_path = os.path.join(str(tmp_path), f"{self.name}.log")
        self.proc = None

    def write_config(self, peers):
        routes = ", ".join(f"nats-route://127.0.0.1:{p.cport}" for p in peers if p is not self)
        auth = ""
        if self.user:
            auth = (f'authorization {{ user: "{self.user}", password: "{self.password}" }}\n')
        text = (f"server_name: {self.name}\n"
                f"listen: 127.0.0.1:{self.port}\n"
                f"http: 127.0.0.1:{self.mport}\n"
                f"{auth}"
                f'jetstream {{ store_dir: "{self.store_dir}", max_mem: 64MB, max_file: 512MB }}\n'
                f"cluster {{ name: {self.cluster_name}, listen: 127.0.0.1:{self.cport}, "
                f"routes: [ {routes} ] }}\n")
        with open(self.conf_path, "w") as f:
            f.write(text)

    def start(self):
        os.makedirs(self.store_dir, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([NATS_SERVER, "-c", self.conf_path],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        finally:
            log.close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL by PID: no shutdown, as in a crash."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
        if self.proc:
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc:
            stop_pid(self.proc)

    def url(self):
        return f"nats://127.0.0.1:{self.port}"

    def log(self):
        return file_tail(self.log_path, 10**6)

    def ready_problem(self, live):
        """None when this server is ready in a cluster of `live` running servers, else why not."""
        if not self.running():
            return f"{self.name} exited (rc={self.proc.poll()})"
        st, h = http_json(self.mport, "/healthz?js-enabled-only=true")
        if st != 200 or not h or h.get("status") != "ok":
            return f"{self.name} /healthz: {st} {h}"
        st, r = http_json(self.mport, "/routez")
        if not r or r.get("num_routes", 0) < live - 1:
            return f"{self.name} /routez: {r and r.get('num_routes')} routes, want {live - 1}"
        st, j = http_json(self.mport, "/jsz")
        meta = (j or {}).get("meta_cluster") or {}
        if not meta.get("leader"):
            return f"{self.name} /jsz: no JetStream meta leader yet ({meta})"
        return None


class NatsCluster:
    """n nats-servers clustered with JetStream; see the module docstring."""

    def __init__(self, tmp_path, n=3, name=None, user=None, password=None, timeout=30):
        self.tmp_path = tmp_path
        self.name = name or f"nc{os.getpid()}x{free_port()}"
        self.user, self.password = user, password
        self.servers = [NatsServer(tmp_path, i, self.name, user, password) for i in range(n)]
        for s in self.servers:
            s.write_config(self.servers)
        try:
            for s in self.servers:
                s.start()
            self.wait_ready(timeout)
        except BaseException:
            print(self.logs())
            self.stop_all()
            raise

    def urls(self):
        """The comma-separated nats:// list of every server (for cluster_nats_url)."""
        return ",".join(s.url() for s in self.servers)

    def wait_ready(self, timeout=30):
        """Every running server is ready (routes to every other running one, a meta leader)."""
        live = [s for s in self.servers if s.running()]
        problems = []
        for _ in deadline_loop(timeout, "NATS cluster ready",
                                lambda: "\n".join(problems) + "\n" + self.logs()):
            problems = [p for p in (s.ready_problem(len(live)) for s in live) if p]
            if not problems:
                return

    def kill(self, i):
        """SIGKILL server i (by PID)."""
        self.servers[i].kill()

    def restart(self, i, timeout=30):
        """Start server i again (same ports, same store) and wait for the cluster."""
        s = self.servers[i]
        if s.running():
            s.stop()
        s.start()
        self.wait_ready(timeout)

    def stop_all(self):
        for s in self.servers:
            s.stop()

    def logs(self, lines=40):
        return "\n".join(f"--- {s.name} ({s.log_path}):\n{file_tail(s.log_path, lines)}"
                         for s in self.servers if os.path.exists(s.log_path))

    def client(self, i=0, **kw):
        """A NatsClient connected to server i (with the cluster's credentials, if any)."""
        kw.setdefault("user", self.user)
        kw.setdefault("password", self.password)
        return NatsClient(self.servers[i].port, **kw)


class NatsClient:
    """A minimal NATS protocol client over a socket (the protocol is text:
    INFO/CONNECT/PUB/SUB/MSG/PING/PONG), enough for JetStream API requests."""

    def __init__(self, port, user=None, password=None, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.sid = 0
        line = self._line(timeout)
        assert line.startswith(b"INFO "), f"NATS greeting: {line!r}"
        self.info = json.loads(line[5:])
        opts = {"verbose": False, "pedantic": False, "name": "hato-clusterkit"}
        if user:
            opts.update(user=user, **{"pass": password})
        self.sock.sendall(b"CONNECT " + json.dumps(opts).encode() + b"\r\nPING\r\n")
        for _ in range(10):
            line = self._line(timeout)
            if line == b"PONG":
                return
            assert not line.startswith(b"-ERR"), f"NATS refused CONNECT: {line!r}"
        raise AssertionError("no PONG after CONNECT")

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("nothing from nats-server")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("nothing from nats-server")
        if not data:
            raise ConnectionError("nats-server closed the connection")
        self.buf += data

    def _line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            self._fill(deadline)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n, deadline):
        while len(self.buf) < n + 2:
            self._fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def request(self, subject, payload, timeout=5.0):
        """PUB subject with a fresh reply inbox; return the first reply's payload."""
        self.sid += 1
        inbox = f"_INBOX.kit{self.sid}"
        if isinstance(payload, str):
            payload = payload.encode()
        self.sock.sendall(f"SUB {inbox} {self.sid}\r\nUNSUB {self.sid} 1\r\n".encode() +
                          f"PUB {subject} {inbox} {len(payload)}\r\n".encode() + payload + b"\r\n")
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            line = self._line(max(0.01, deadline - time.monotonic()))
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"MSG "):
                n = int(line.split()[-1])
                return self._exact(n, deadline)
            elif line.startswith(b"-ERR"):
                raise AssertionError(f"nats-server: {line!r}")
        raise AssertionError("no reply")

    def js(self, api, body=None, timeout=5.0):
        """A JetStream API call ($JS.API.<api>) -> the parsed JSON reply."""
        return json.loads(self.request("$JS.API." + api, json.dumps(body or {}), timeout))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def create_stream(nats, name, subjects, replicas=3, server=0, timeout=20):
    """Create a file stream with `replicas` replicas through server `server`; return
    the reply. Retried (bounded) while JetStream says it is not ready yet."""
    last = None
    for _ in deadline_loop(timeout, f"stream {name} created", lambda: f"last reply: {last}"):
        c = nats.client(server)
        try:
            last = c.js(f"STREAM.CREATE.{name}", {"name": name, "subjects": subjects,
                                                  "num_replicas": replicas,
                                                  "storage": "file"})
        except (TimeoutError, ConnectionError) as e:
            last = repr(e)
            continue
        finally:
            c.close()
        if isinstance(last, dict) and "error" not in last:
            return last


# ---------------------------------------------------------------------------
# HAProxy


class Haproxy:
    """haproxy -db (a child in the foreground) on a free port, spreading TCP connections
    over backends [(name, port)] with PROXY protocol v2 and fast health checks."""

    def __init__(self, tmp_path, backends, balance="roundrobin", proxy_v2=True):
        self.port = free_port()
        self.backends = list(backends)
        self.sock_path = os.path.join(str(tmp_path), f"haproxy-{self.port}.sock")
        self.cfg_path = os.path.join(str(tmp_path), f"haproxy-{self.port}.cfg")
        self.log_path = os.path.join(str(tmp_path), f"haproxy-{self.port}.log")
        send = "send-proxy-v2 check-send-proxy " if proxy_v2 else ""
        servers = "".join(f"    server {n} 127.0.0.1:{p} {send}check inter 200ms fall 1 rise 1\n"
                          for n, p in self.backends)
        with open(self.cfg_path, "w") as f:
            f.write(f"""global
    maxconn 500
    stats socket {self.sock_path} level admin
defaults
    mode tcp
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    retries 3
    option redispatch
frontend mqtt
    bind 127.0.0.1:{self.port}
    default_backend hato
backend hato
    balance {balance}
{servers}""")
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen([HAPROXY, "-f", self.cfg_path, "-db"],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT)
        finally:
            log.close()
        self.host = "127.0.0.1"
        self.name = f"haproxy-{self.port}"
        try:
            self.wait_states({n: "UP" for n, _ in self.backends})
        except BaseException:
            stop_pid(self.proc)
            raise

    def log(self):
        return file_tail(self.log_path, 10**6)

    def states(self):
        """{server name: status} from the stats socket's `show stat` (UP, DOWN, ...)."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(self.sock_path)
                s.sendall(b"show stat\n")
                data = b""
                for _ in range(1000):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        except OSError:
            return {}
        text = data.decode(errors="replace").lstrip("# ")
        out = {}
        for row in csv.DictReader(io.StringIO(text)):
            if row.get("pxname") == "hato" and row.get("svname") not in ("BACKEND", None):
                out[row["svname"]] = row.get("status", "").split()[0] if row.get("status") else ""
        return out

    def wait_states(self, want, timeout=15):
        """Wait until every named server has the wanted status (e.g. {"n1": "DOWN"})."""
        got = {}
        for _ in deadline_loop(timeout, f"haproxy servers {want}",
                                lambda: f"states: {got}\n{file_tail(self.log_path)}"):
            if self.proc.poll() is not None:
                raise AssertionError(f"haproxy exited ({self.proc.returncode}):\n{self.log()}")
            got = self.states()
            if all(got.get(n) == st for n, st in want.items()):
                return got

    def stop(self):
        stop_pid(self.proc)


# ---------------------------------------------------------------------------
# hato nodes


class HatoNode(Broker):
    """A hato process: direct listener .port, PROXY-v2 listener .pport (for haproxy),
    optional metrics listener .mport, persistence in its own directory when it is
    not clustered (a clustered node's state is in JetStream), and
    `cluster` (the directives' text, "" for a node on its own)."""

    def __init__(self, tmp_path, name, cluster="", metrics=False, extra=""):
        self.name = name
        self.pport = free_port()
        self.mport = free_port() if metrics else None
        self.store_dir = os.path.join(str(tmp_path), f"{name}-store")
        os.makedirs(self.store_dir, exist_ok=True)
        self.killed = False
        # A clustered node keeps no store of its own (refused: its sessions and
        # retained messages live in JetStream); a node alone keeps one.
        store = "" if cluster else store_config(self.store_dir)
        text = cluster + store + "sys_interval 1\n" + extra
        text += f"listener {self.pport} 127.0.0.1\nenable_proxy_protocol 2\n"
        if metrics:
            text += f"listener {self.mport}\nprotocol metrics\n"
        try:
            super().__init__(tmp_path, text)
        except BaseException:
            if getattr(self, "proc", None) is not None:  # started but never ready
                LoggedProcess.kill(self)
            raise

    def kill(self):
        """SIGKILL by PID; the node is then not checked at teardown."""
        self.killed = True
        super().kill()

    def has_client(self, client_id, start=0):
        """True when this node's log says client_id connected (from log line index start)."""
        needle = f" as {client_id} ("  # "New client connected from A as ID (p4, c1, k60)."
        with self.cond:
            return any(l is not None and "New client connected" in l and needle in l
                       for l in self.lines[start:])


def cluster_directives(nats, cluster_name, node_name, replicas=3):
    text = (f"cluster_nats_url {nats.urls()}\ncluster_name {cluster_name}\n"
            f"node_name {node_name}\ncluster_replicas {replicas}\n")
    if nats.user:
        text += f"cluster_nats_user {nats.user}\ncluster_nats_password {nats.password}\n"
    return text


class Cluster:
    """What one test started: .nats (NatsCluster), .nodes (HatoNode n1..nk),
    .proxies (Haproxy); stop() stops all by PID and checks the hato nodes."""

    def __init__(self, tmp_path, name):
        self.tmp_path = tmp_path
        self.name = name
        self.nats = None
        self.nodes = []
        self.proxies = []

    def start_nats(self, n=3, **kw):
        self.nats = NatsCluster(self.tmp_path, n, name=f"{self.name}nats", **kw)
        return self.nats

    def start_node(self, metrics=False, extra="", replicas=3):
        """One more hato node, n<k>, joined to the NATS cluster. With ONE_BROKER, n1 is a
        plain hato and n2.. are other names for it."""
        name = f"n{len(self.nodes) + 1}"
        if ONE_BROKER and self.nodes:
            node = copy.copy(self.nodes[0])
            node.name = name
        elif ONE_BROKER:
            node = HatoNode(self.tmp_path, name, "", metrics=metrics, extra=extra)
        else:
            conf = cluster_directives(self.nats, self.name, name, replicas)
            node = HatoNode(self.tmp_path, name, conf, metrics=metrics, extra=extra)
        self.nodes.append(node)
        return node

    def start_haproxy(self, nodes=None, balance="roundrobin"):
        nodes = self.nodes if nodes is None else nodes
        h = Haproxy(self.tmp_path, [(n.name, n.pport) for n in nodes], balance)
        self.proxies.append(h)
        return h

    def node_of(self, client_id):
        """A live node whose log says client_id connected (the last of n1..nk that does;
        None if none)."""
        found = None
        for n in self.nodes:
            if not n.killed and n.has_client(client_id):
                found = n
        return found

    def logs(self):
        out = []
        for n in {id(n.proc): n for n in self.nodes}.values():  # ONE_BROKER: once
            # HAProxy's health checks (a connection on the PROXY port, reset at once)
            # would fill the tail: left out.
            lines = n.log.splitlines()
            keep = [l for i, l in enumerate(lines)
                    if not (f"on port {n.pport}." in l and i + 1 < len(lines)
                            and "Connection reset by peer" in lines[i + 1])
                    and not ("Connection reset by peer" in l and i > 0
                             and f"on port {n.pport}." in lines[i - 1])]
            out.append(f"--- hato {n.name} (port {n.port}, proxy {n.pport}):\n"
                       f"{tail(chr(10).join(keep), 80)}")
        for h in self.proxies:
            out.append(f"--- {h.name}:\n{file_tail(h.log_path, 30)}")
        if self.nats:
            out.append(self.nats.logs())
        return "\n".join(out)

    def stop(self):
        errors = []
        for h in self.proxies:
            h.stop()
        for n in self.nodes:
            if n.killed:
                continue
            try:
                n.stop()
            except AssertionError as e:
                errors.append(f"{n.name}: {e}")
        if self.nats:
            self.nats.stop_all()
        return errors


def unique_name(request):
    """A cluster_name unique to this test (letters and digits)."""
    return "t" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10]


@pytest.fixture
def cluster(tmp_path, request):
    """start(k=3, nats=3, metrics=False, extra="", haproxy=False, nats_user=None,
    nats_password=None) -> Cluster with a NATS cluster of `nats` servers (requiring
    that user and password if given) and k hato nodes (n1..nk; more with
    Cluster.start_node()); everything is stopped at teardown, the nodes checked
    (exit status, sanitizers), the logs printed."""
    made = []

    def start(k=3, nats=3, metrics=False, extra="", haproxy=False, nats_user=None,
              nats_password=None):
        c = Cluster(tmp_path, unique_name(request))
        made.append(c)
        c.start_nats(nats, user=nats_user, password=nats_password)
        for _ in range(k):
            c.start_node(metrics=metrics, extra=extra)
        if haproxy:
            c.start_haproxy()
        return c

    yield start
    errors = []
    for c in made:
        print(c.logs())
        errors += c.stop()
    if errors:
        pytest.fail("\n".join(errors))


# ---------------------------------------------------------------------------
# Waiting for the mesh


def await_route(pub_node, subs, topic, timeout=20):
    """bridgekit.await_flow for each client in subs (bridgekit.Client, subscribed to a
    filter matching topic): QoS 0 probes from pub_node until each has received one; the
    probes are then cleared from their .got. Cross-node interest propagates
    asynchronously, so a test awaits this before it measures."""
    for s in subs:
        await_flow(pub_node, s, topic, timeout)
    for s in subs:
        s.poll(0.05)
        s.got = [m for m in s.got if not m[1].startswith(b"probe-")]


class PahoSubscriber:
    """paho-mqtt client (MQTT 3.1.1, clean_session False, fixed client id) that
    reconnects by itself (to the same host and port: haproxy) and records every
    payload delivered to it on `topic` at QoS 1."""

    def __init__(self, port, client_id, topic, qos=1):
        import paho.mqtt.client as mqtt
        self.client_id, self.topic, self.qos = client_id, topic, qos
        self.got = []
        self.connacks = []  # (session_present, rc) per CONNACK
        self.subacks = []
        self.cond = threading.Condition()
        self.c = mqtt.Client(client_id=client_id, clean_session=False)
        self.c.reconnect_delay_set(min_delay=0.2, max_delay=1)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.connect("127.0.0.1", port, keepalive=5)
        self.c.loop_start()
        self.wait(lambda: self.connacks, 10, "CONNACK")
        assert self.connacks[0][1] == 0, f"{client_id}: CONNACK {self.connacks[0]}"
        self.wait(lambda: self.subacks, 10, "SUBACK")

    def _on_connect(self, client, userdata, flags, rc):
        with self.cond:
            self.connacks.append((flags.get("session present", 0), rc))
            self.cond.notify_all()
        if rc == 0 and len(self.connacks) == 1:
            client.subscribe(self.topic, self.qos)

    def _on_subscribe(self, client, userdata, mid, granted):
        with self.cond:
            self.subacks.append(granted)
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.got.append(msg.payload)
            self.cond.notify_all()

    def wait(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.client_id}: no {what} in {timeout}s")
                self.cond.wait(left)

    # wait_for(payloads, timeout) -> the payloads still missing at the deadline.
    wait_for = Subscriber.wait_for

    def close(self):
        self.c.disconnect()
        self.c.loop_stop()
