"""Configuration and security files edited the ways real installations edit
them, run by hato and by Debian's mosquitto 2.0.11 (both started here, on
ephemeral loopback ports, with the same files) and the outcomes compared.

- password_file and acl_file saved on Windows (CRLF, a UTF-8 byte order
  mark), with blanks around lines and fields, a user given twice, files made
  by mosquitto_passwd itself ($7$ and -H sha512's $6$);
- include_dir: Mosquitto's order of the files (case-folded first, then the
  exact byte) and which files are read (NAME.conf only);
- per_listener_settings true with a password file and an ACL per listener;
- listener with bind_interface lo, socket_domain ipv4 / ipv6.

Where hato differs on purpose (a BOM in the password or ACL file, a
directory named x.conf in include_dir) the test pins both behaviours and
docs/migration.md ("Configuration files") says why.
"""

import os
import shutil
import socket
import subprocess

import pytest

from authutil import MOSQUITTO, MOSQUITTO_PASSWD
from conftest import HATO_BIN, SANITIZER_MARKS, LoggedProcess, free_port
from mqttraw import PUBLISH, SUBACK, RawClient, publish, subscribe, v5_client

pytestmark = pytest.mark.hato_only("starts hato and mosquitto itself and compares them")

ROOT_LINE = "user root\n" if os.geteuid() == 0 else ""


class Peer(LoggedProcess):
    """hato or mosquitto with exactly this config text (plus logging to stderr,
    staying root when run as root, and hato's login slow-down off)."""

    def __init__(self, kind, tmp_path, text):
        self.kind = kind
        self.host = "127.0.0.1"
        d = tmp_path / kind
        d.mkdir(exist_ok=True)
        conf = d / f"{kind}-{free_port()}.conf"
        extra = "auth_fail_delay 0\n" if kind == "hato" else ""
        conf.write_text("log_dest stderr\nlog_type all\n" + ROOT_LINE + extra + text)
        self.config_path = str(conf)
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        super().__init__([HATO_BIN if kind == "hato" else MOSQUITTO, "-c", str(conf)], env)
        self.started = True
        try:
            self.wait_log(r"version \S+ running", timeout=15)
        except AssertionError:
            self.started = False
        except TimeoutError:
            self.started = False

    def stop(self):
        self.terminate(timeout=10)
        log = self.log
        for mark in SANITIZER_MARKS:
            assert mark not in log, f"{self.kind}: sanitizer report:\n{log}"


def start_both(tmp_path, make_text):
    """make_text(ports) -> config text; ports are a fresh dict per broker."""
    peers = {}
    for kind in ("hato", "mosquitto"):
        ports = {n: free_port() for n in ("a", "b")}
        p = Peer(kind, tmp_path, make_text(ports))
        p.ports = ports
        peers[kind] = p
    return peers


def stop_all(peers):
    for p in peers.values():
        p.stop()


def wait_started(p):
    assert p.started, f"{p.kind} did not start:\n{p.log}"


def login(port, user, password, host="127.0.0.1", family=socket.AF_INET):
    """CONNACK return code of a 3.1.1 login, or 'refused' when the TCP connect fails."""
    try:
        c = RawClient(port, host=host)
    except OSError:
        return "refused"
    try:
        return c.connect("c-" + (user or "anon"), username=user, password=password).reason
    except (ConnectionError, TimeoutError) as e:
        return repr(e)
    finally:
        c.close()


def mosquitto_passwd(path, user, password, create=False, sha512=False):
    args = [MOSQUITTO_PASSWD]
    if sha512:
        args += ["-H", "sha512"]
    if create:
        args += ["-c"]
    subprocess.run(args + ["-b", str(path), user, password], check=True, capture_output=True,
                   timeout=60)


def users_file(tmp_path):
    """A password file written by mosquitto_passwd: alice and bob ($7$), carol ($6$)."""
    pw = tmp_path / "made-by-mosquitto_passwd"
    mosquitto_passwd(pw, "alice", "secret", create=True)
    mosquitto_passwd(pw, "bob", "hunter2")
    mosquitto_passwd(pw, "carol", "six", sha512=True)
    data = pw.read_bytes()
    assert b"alice:$7$" in data and b"carol:$6$" in data, data
    return data


LOGINS = [("alice", b"secret"), ("bob", b"hunter2"), ("carol", b"six"), ("alice", b"hunter2"),
          ("nobody", b"secret"), (None, None)]


def logins_with(tmp_path, name, data):
    f = tmp_path / name
    f.write_bytes(data)
    peers = start_both(tmp_path, lambda p: f"listener {p['a']} 127.0.0.1\n"
                       f"allow_anonymous false\npassword_file {f}\n")
    try:
        out = {}
        for kind, p in peers.items():
            wait_started(p)
            out[kind] = [login(p.ports["a"], u, pw) for u, pw in LOGINS]
        return out, peers
    finally:
        stop_all(peers)


# --- password_file ---------------------------------------------------------------------------

OK, BAD = 0, 5  # CONNACK 3.1.1: accepted, not authorised
AS_WRITTEN = [OK, OK, OK, BAD, BAD, BAD]


@pytest.mark.parametrize("variant", ["as-written", "crlf", "trailing-spaces", "trailing-tabs",
                                     "blanks-around-fields", "crlf-and-trailing-blanks",
                                     "indented-comment", "no-final-newline"])
def test_password_file_edits_read_as_mosquitto(tmp_path, variant):
    data = users_file(tmp_path)
    lines = data.rstrip(b"\n").split(b"\n")
    edit = {
        "as-written": lambda: data,
        "crlf": lambda: data.replace(b"\n", b"\r\n"),
        "trailing-spaces": lambda: data.replace(b"\n", b"   \n"),
        "trailing-tabs": lambda: data.replace(b"\n", b"\t\n"),
        "blanks-around-fields": lambda: b"".join(b" \t" + l.replace(b":", b" \t: ", 1) + b"\n"
                                                 for l in lines),
        "crlf-and-trailing-blanks": lambda: data.replace(b"\n", b" \t\r\n"),
        "indented-comment": lambda: b"   # users\n" + data,
        "no-final-newline": lambda: data.rstrip(b"\n"),
    }[variant]
    out, _ = logins_with(tmp_path, "pw-" + variant, edit())
    assert out["mosquitto"] == AS_WRITTEN, out  # the reference accepts every one of these
    assert out["hato"] == out["mosquitto"], out


def test_password_file_user_twice_later_line_wins_as_mosquitto(tmp_path):
    """A line appended for a user who is already there (changing a password by
    hand): the later line is the password, in both; hato also logs it."""
    data = users_file(tmp_path)
    bob_hash = [l for l in data.split(b"\n") if l.startswith(b"bob:")][0].split(b":", 1)[1]
    out, peers = logins_with(tmp_path, "pw-twice", data + b"alice:" + bob_hash + b"\n")
    assert out["mosquitto"][0] == BAD and out["mosquitto"][3] == OK, out  # hunter2 now
    assert out["hato"] == out["mosquitto"], out
    assert "user 'alice' appears again; this line replaces line 1" in peers["hato"].log


def test_password_file_with_bom(tmp_path):
    """Saved as "UTF-8 with BOM" (Windows Notepad): Mosquitto takes the three
    bytes as part of the first user's name, so alice silently cannot log in.
    hato skips the mark (as its config reader does): the file means what it
    shows. Everything else is the same."""
    data = users_file(tmp_path)
    out, _ = logins_with(tmp_path, "pw-bom", b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"))
    assert out["mosquitto"] == [BAD] + AS_WRITTEN[1:], out
    assert out["hato"] == AS_WRITTEN, out


# --- acl_file ---------------------------------------------------------------------------------

ACL = b"user admin\ntopic readwrite #\n\nuser alice\ntopic readwrite a/#\ntopic read r/#\n"


def acl_outcome(port):
    """alice subscribes a/#, r/#, b/#; admin publishes a/1, r/1, b/1, then alice
    r/2 and a/2. The topics alice receives. Each phase ends with a marker its
    publisher sends last (a/end, a/2), so nothing is waited for by time."""
    sub = RawClient(port)
    assert sub.connect("alice-c", username="alice", password=b"secret").reason == 0
    sub.send(subscribe(1, [("a/#", 0), ("r/#", 0), ("b/#", 0)]))
    sub.expect(SUBACK)  # return codes differ (Mosquitto 2.0 grants and filters later)
    admin = RawClient(port)
    assert admin.connect("admin-c", username="admin", password=b"adminpw").reason == 0
    for t in ("a/1", "r/1", "b/1", "a/end"):
        admin.send(publish(t, b"x"))
    got = collect(sub, "a/end")
    for t in ("r/2", "a/2"):
        sub.send(publish(t, b"y"))
    got |= collect(sub, "a/2")
    sub.close()
    admin.close()
    return got - {"a/end"}


def acl_with(tmp_path, name, acl):
    pw = tmp_path / "pw"
    mosquitto_passwd(pw, "alice", "secret", create=True)
    mosquitto_passwd(pw, "admin", "adminpw")
    f = tmp_path / name
    f.write_bytes(acl)
    peers = start_both(tmp_path, lambda p: f"listener {p['a']} 127.0.0.1\n"
                       f"allow_anonymous false\npassword_file {pw}\nacl_file {f}\n")
    try:
        return {k: (acl_outcome(p.ports["a"]) if p.started else "did not start")
                for k, p in peers.items()}, peers
    finally:
        stop_all(peers)


@pytest.mark.parametrize("variant", ["as-written", "crlf", "trailing-spaces", "trailing-tabs",
                                     "indented", "double-spaces"])
def test_acl_file_edits_read_as_mosquitto(tmp_path, variant):
    edit = {
        "as-written": ACL,
        "crlf": ACL.replace(b"\n", b"\r\n"),
        "trailing-spaces": ACL.replace(b"\n", b"  \n"),
        "trailing-tabs": ACL.replace(b"\n", b"\t\n"),
        "indented": b"".join(b"   " + l + b"\n" for l in ACL.split(b"\n")),
        "double-spaces": ACL.replace(b"readwrite ", b"readwrite  ").replace(b"user ", b"user  "),
    }[variant]
    out, _ = acl_with(tmp_path, "acl-" + variant, edit)
    assert out["mosquitto"] == {"a/1", "r/1", "a/2"}, out  # b/1 not readable, r/2 not writable
    assert out["hato"] == out["mosquitto"], out


def test_acl_file_with_bom(tmp_path):
    """Mosquitto refuses to start ("Invalid line in acl_file ... \\ufeffuser");
    hato skips the mark and applies the rules as written."""
    out, peers = acl_with(tmp_path, "acl-bom", b"\xef\xbb\xbf" + ACL.replace(b"\n", b"\r\n"))
    assert out["mosquitto"] == "did not start", out
    assert "Invalid line in acl_file" in peers["mosquitto"].log
    assert out["hato"] == {"a/1", "r/1", "a/2"}, out


# --- include_dir ------------------------------------------------------------------------------

def server_keep_alive(port):
    c, ack = v5_client(port, "ka", keepalive=1000)
    c.close()
    return ack.props.get("server_keep_alive")


def include_outcome(tmp_path, files, dirs=()):
    """Each file sets max_keepalive; the value in force (MQTT 5 Server Keep
    Alive) names the file read last. 'did not start' when a file was refused."""
    out = {}
    for kind in ("hato", "mosquitto"):
        inc = tmp_path / f"conf.d-{kind}"
        shutil.rmtree(inc, ignore_errors=True)
        inc.mkdir()
        for name, text in files.items():
            (inc / name).write_text(text)
        for name in dirs:
            (inc / name).mkdir()
        port = free_port()
        p = Peer(kind, tmp_path, f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                 f"include_dir {inc}\n")
        try:
            out[kind] = server_keep_alive(port) if p.started else "did not start"
        finally:
            p.stop()
        out[kind + "-log"] = p.log
    return out


@pytest.mark.parametrize("files, last", [
    # Case-folded first: a.conf before B.conf (plain strcmp would put B first).
    ({"B.conf": 11, "a.conf": 22}, 11),
    # Same letters: the exact byte decides, A before a.
    ({"a.conf": 22, "A.conf": 11}, 22),
    # Folded to upper case, so '_' (0x5F) comes after 'B' (0x42): ab, a_b.
    ({"a-b.conf": 11, "a_b.conf": 22, "ab.conf": 33}, 22),
    # Names, not numbers: 10 before 9.
    ({"10-x.conf": 11, "9-x.conf": 22}, 22),
    # Bytes are unsigned: UTF-8 after ASCII ('~' is 0x7E).
    ({"é.conf": 11, "Z.conf": 22, "~.conf": 33}, 11),
    ({"a[.conf": 11, "aB.conf": 22}, 11),
], ids=["case-folded", "exact-byte-tie", "punctuation", "digits", "utf8", "bracket"])
def test_include_dir_order_as_mosquitto(tmp_path, files, last):
    out = include_outcome(tmp_path, {n: f"max_keepalive {v}\n" for n, v in files.items()})
    assert out["mosquitto"] == last, out
    assert out["hato"] == out["mosquitto"], out


def test_include_dir_reads_only_name_dot_conf(tmp_path):
    """Files not ending in .conf (and '.conf' itself) are not read: each would
    stop start-up if it were. Hidden NAME.conf files are read, by both."""
    bad = "not_a_directive\n"
    files = {"a.conf": "max_keepalive 11\n", "z.conf.bak": bad, "z.conf~": bad, "z.CONF": bad,
             "z.txt": bad, "zconf": bad, ".conf": bad, "README": bad}
    out = include_outcome(tmp_path, files)
    assert out["mosquitto"] == 11 and out["hato"] == 11, out
    out = include_outcome(tmp_path, {"a.conf": "max_keepalive 11\n", ".hidden.conf": bad})
    assert out["mosquitto"] == "did not start" and out["hato"] == "did not start", out
    assert ".hidden.conf:1: unknown directive 'not_a_directive'" in out["hato-log"]


def test_include_dir_directory_named_conf(tmp_path):
    """A directory z.conf inside include_dir: Mosquitto tries to read it as a
    file and stops; hato does not read it and says so at its include_dir line."""
    out = include_outcome(tmp_path, {"a.conf": "max_keepalive 11\n"}, dirs=["z.conf"])
    assert out["mosquitto"] == "did not start", out
    assert out["hato"] == 11, out
    assert "z.conf' is not a regular file; not read" in out["hato-log"]


# --- per_listener_settings --------------------------------------------------------------------

def test_per_listener_password_files_and_acls(tmp_path):
    """Listener a: users of pw-a and rules of acl-a; listener b: pw-b, acl-b.
    alice exists only in pw-a, bob only in pw-b, and each listener's ACL
    applies to its own clients (publishing and receiving)."""
    pwa, pwb = tmp_path / "pw-a", tmp_path / "pw-b"
    mosquitto_passwd(pwa, "alice", "secret", create=True)
    mosquitto_passwd(pwb, "bob", "hunter2", create=True)
    acla, aclb = tmp_path / "acl-a", tmp_path / "acl-b"
    acla.write_text("user alice\ntopic readwrite a/#\ntopic read shared/#\n")
    aclb.write_text("user bob\ntopic readwrite b/#\ntopic write shared/#\n")

    def text(p):
        return (f"per_listener_settings true\n"
                f"listener {p['a']} 127.0.0.1\nallow_anonymous false\n"
                f"password_file {pwa}\nacl_file {acla}\n"
                f"listener {p['b']} 127.0.0.1\nallow_anonymous false\n"
                f"password_file {pwb}\nacl_file {aclb}\n")

    peers = start_both(tmp_path, text)
    try:
        out = {}
        for kind, p in peers.items():
            wait_started(p)
            a, b = p.ports["a"], p.ports["b"]
            res = {"logins": [login(a, "alice", b"secret"), login(b, "alice", b"secret"),
                              login(b, "bob", b"hunter2"), login(a, "bob", b"hunter2"),
                              login(a, None, None), login(b, None, None)]}
            alice = RawClient(a)
            assert alice.connect("alice-c", username="alice", password=b"secret").reason == 0
            alice.send(subscribe(1, [("a/#", 0), ("b/#", 0), ("shared/#", 0)]))
            alice.expect(SUBACK)
            bob = RawClient(b)
            assert bob.connect("bob-c", username="bob", password=b"hunter2").reason == 0
            bob.send(subscribe(1, [("a/#", 0), ("b/#", 0), ("shared/#", 0)]))
            bob.expect(SUBACK)
            # Phase 1, bob (may write shared and b); shared/end last, for alice.
            for t in ("shared/1", "b/1", "a/1", "b/mark", "shared/end"):
                bob.send(publish(t, b"from bob"))
            res["alice got"] = collect(alice, "shared/end") - {"shared/end"}
            res["bob got"] = collect(bob, "b/mark") - {"b/mark"}
            # Phase 2, alice (may write a only); a/end last, for herself.
            for t in ("shared/2", "b/2", "a/2", "a/end"):
                alice.send(publish(t, b"from alice"))
            res["alice got"] |= collect(alice, "a/end") - {"a/end"}
            bob.send(publish("b/end", b""))
            res["bob got"] |= collect(bob, "b/end") - {"b/end"}
            alice.close()
            bob.close()
            out[kind] = res
        assert out["mosquitto"]["logins"] == [OK, BAD, OK, BAD, BAD, BAD], out
        assert out["mosquitto"]["alice got"] == {"shared/1", "a/2"}, out
        assert out["mosquitto"]["bob got"] == {"b/1"}, out  # shared/# is write-only for bob
        assert out["hato"] == out["mosquitto"], out
    finally:
        stop_all(peers)


def collect(client, last, limit=20):
    """Topics of the PUBLISHes client receives up to and including `last`."""
    got = set()
    for _ in range(limit):
        try:
            p = client.expect(PUBLISH, timeout=3)
        except TimeoutError:
            break
        got.add(p.topic)
        if p.topic == last:
            break
    return got


# --- bind_interface, socket_domain ------------------------------------------------------------

def tcp_open(host, port, family):
    try:
        with socket.create_connection((host, port), timeout=3) as s:
            s.settimeout(3)
            s.sendall(bytes([0x10, 12, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 0]))
            return s.recv(4) == bytes([0x20, 2, 0, 0])
    except OSError:
        return False


@pytest.mark.parametrize("lines, expect", [
    ("socket_domain ipv4\n", {"127.0.0.1": True, "::1": False}),
    ("socket_domain ipv6\n", {"127.0.0.1": False, "::1": True}),
    ("bind_interface lo\n", {"127.0.0.1": True, "::1": True}),
    ("bind_interface lo\nsocket_domain ipv4\n", {"127.0.0.1": True, "::1": False}),
], ids=["ipv4", "ipv6", "bind-lo", "bind-lo-ipv4"])
def test_listener_domain_and_interface(tmp_path, lines, expect):
    """listener PORT (all addresses) with socket_domain / bind_interface lo:
    which loopback addresses take a connection."""
    peers = start_both(tmp_path, lambda p: f"listener {p['a']}\n{lines}allow_anonymous true\n")
    try:
        out = {}
        for kind, p in peers.items():
            wait_started(p)
            out[kind] = {h: tcp_open(h, p.ports["a"], None) for h in ("127.0.0.1", "::1")}
        assert out["mosquitto"] == expect, out
        assert out["hato"] == out["mosquitto"], out
    finally:
        stop_all(peers)


def test_bind_interface_missing_stops_both(tmp_path):
    peers = start_both(tmp_path, lambda p: f"listener {p['a']}\nbind_interface nosuchif0\n"
                       "allow_anonymous true\n")
    try:
        assert not peers["mosquitto"].started, peers["mosquitto"].log
        assert not peers["hato"].started, peers["hato"].log
        assert "nosuchif0" in peers["hato"].log, peers["hato"].log
    finally:
        stop_all(peers)
