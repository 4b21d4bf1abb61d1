"""`user NAME`: started as root, hato drops to NAME once the listeners are bound
and the store and log file are open (issue 13; docs/security.md). Run as root
only (as in CI); `nobody` is Debian's account for it, so nothing is created
on the machine."""

import os
import pwd
import re
import shutil
import socket
import stat
import tempfile
import time

import pytest

from conftest import HATO_BIN, Broker, LoggedProcess, free_port
from mqttraw import PINGRESP, RawClient, connected_client, disconnect, pingreq, publish_ok, \
    recv_publish, subscribe_ok

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.hato_only("hato's start-up messages")]

NOBODY = pwd.getpwnam("nobody")


def privileged_port():
    """A free loopback TCP port below 1024 (binding it needs root)."""
    for port in range(1023, 900, -1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    pytest.skip("no free port below 1024")


def ids(path):
    """(uids, gids, groups) from a /proc status file."""
    text = open(path).read()
    uids = re.search(r"^Uid:\s+(.*)$", text, re.M).group(1).split()
    gids = re.search(r"^Gid:\s+(.*)$", text, re.M).group(1).split()
    groups = re.search(r"^Groups:[ \t]*(.*)$", text, re.M).group(1).split()
    return [int(u) for u in uids], [int(g) for g in gids], [int(g) for g in groups]


def all_tasks(pid):
    return [f"/proc/{pid}/task/{t}/status" for t in os.listdir(f"/proc/{pid}/task")]


def leave(c):
    c.send(disconnect())
    c.expect_closed(5)
    c.close()


def test_drops_to_user_after_binding_a_privileged_port(tmp_path):
    """`user nobody`: every thread runs as nobody (uid, gid, no other groups than
    nobody's), the listener bound as root on a port below 1024 still serves, and
    the store opened as root still commits (its acknowledgements wait for that);
    the store file, created at start-up, now belongs to nobody, so a restart
    finds it usable."""
    port = privileged_port()
    store = tmp_path / "store"
    store.mkdir()
    conf = (f"listener {port} 127.0.0.1\nuser nobody\nthreads 2\npersistence true\n"
            f"persistence_location {store}/\n")
    b = Broker(tmp_path, conf, listener=False)
    try:
        b.wait_log(r"Running as user 'nobody' \(uid 65534, gid 65534\)")
        tasks = all_tasks(b.proc.pid)
        assert len(tasks) >= 4  # main, two workers, the store's threads, the password pool
        for t in tasks:
            uids, gids, groups = ids(t)
            assert uids == [NOBODY.pw_uid] * 4, (t, uids)
            assert gids == [NOBODY.pw_gid] * 4, (t, gids)
            assert set(groups) <= {NOBODY.pw_gid}, (t, groups)
        b.port = port
        sub = connected_client(b, "keep", clean=False)
        assert subscribe_ok(sub, 1, [("d/#", 1)]).codes == [1]
        leave(sub)
        with connected_client(b, "pub") as pub:
            publish_ok(pub, "d/1", b"kept", qos=1)  # PUBACK only after the commit
            leave(pub)
        db = store / "mosquitto.db"
        assert os.stat(db).st_uid == NOBODY.pw_uid
        assert os.stat(str(db) + "-lock").st_uid == NOBODY.pw_uid
    finally:
        b.stop()
    b2 = Broker(tmp_path, conf, listener=False)
    try:
        b2.port = port
        b2.wait_log(r"Persistence: restored")
        c = connected_client(b2, "keep", clean=False)
        assert c.connack.session_present
        p = recv_publish(c)
        assert (p.topic, p.payload) == ("d/1", b"kept")
        leave(c)
    finally:
        b2.stop()


def test_log_file_created_is_given_to_the_user(tmp_path):
    """A log file hato creates belongs to the user (mode 0640), so that it can
    be reopened after the drop."""
    d = tempfile.mkdtemp(prefix="hato-privdrop-")
    try:
        os.chmod(d, 0o755)
        log = os.path.join(d, "hato.log")
        conf = os.path.join(d, "h.conf")
        with open(conf, "w") as f:
            f.write(f"listener {free_port()} 127.0.0.1\nallow_anonymous true\nuser nobody\n"
                    f"log_dest file {log}\n")
        p = LoggedProcess([HATO_BIN, "-c", conf])
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if os.path.exists(log) and "running" in open(log).read():
                    break
                assert p.proc.poll() is None, p.log
                time.sleep(0.05)
            text = open(log).read()
            assert "Running as user 'nobody'" in text, text
            st = os.stat(log)
            assert (st.st_uid, st.st_gid) == (NOBODY.pw_uid, NOBODY.pw_gid)
            assert stat.S_IMODE(st.st_mode) == 0o640
        finally:
            _, in_time = p.terminate()
            assert in_time and p.proc.returncode == 0, p.log
    finally:
        shutil.rmtree(d)


def test_unknown_user_refuses_to_start(tmp_path):
    """A `user` that does not exist stops start-up with a clear error; hato does
    not carry on as root."""
    conf = tmp_path / "h.conf"
    conf.write_text(f"listener {free_port()} 127.0.0.1\nallow_anonymous true\n"
                    "user hato-no-such-user\n")
    p = LoggedProcess([HATO_BIN, "-c", str(conf)])
    rc = p.proc.wait(timeout=30)
    p.reader.join(timeout=10)
    assert rc == 1, p.log
    assert "Error: cannot drop privileges to user 'hato-no-such-user': no such user" in p.log
    assert "running" not in p.log


def test_user_root_keeps_root_with_a_warning(tmp_path):
    """`user root` (what the test suite's brokers use) keeps root and says so."""
    b = Broker(tmp_path, "user root\n")
    try:
        assert "Warning: running as root (user root)" in b.log
        for t in all_tasks(b.proc.pid):
            assert ids(t)[0] == [0, 0, 0, 0]
        with connected_client(b, "r") as c:
            c.send(pingreq())
            c.expect(PINGRESP)
    finally:
        b.stop()


def test_not_root_nothing_to_drop(tmp_path):
    """Started as another user, hato stays that user whatever `user` says
    (here the default, "mosquitto")."""
    d = tempfile.mkdtemp(prefix="hato-privdrop-")
    try:
        os.chmod(d, 0o755)
        port = free_port()
        conf = os.path.join(d, "h.conf")
        with open(conf, "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        os.chmod(conf, 0o644)
        p = LoggedProcess(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           HATO_BIN, "-c", conf])
        try:
            p.wait_log(r"version \S+ running", timeout=15)
            assert "Running as user" not in p.log and "running as root" not in p.log
            assert ids(f"/proc/{p.proc.pid}/status")[0] == [NOBODY.pw_uid] * 4
        finally:
            _, in_time = p.terminate()
            assert in_time and p.proc.returncode == 0, p.log
    finally:
        shutil.rmtree(d)


def test_default_user_missing_falls_back_to_nobody(tmp_path):
    """The default `mosquitto` account does not exist (here: hidden by a private
    mount of a passwd file without it, for hato alone): as Mosquitto, hato
    warns and runs as nobody, and gives nobody no files (the store it created
    stays root's; its open files keep working)."""
    passwd = tmp_path / "passwd"
    with open("/etc/passwd") as f:
        passwd.write_text("".join(l for l in f if not l.startswith("mosquitto:")))
    store = tmp_path / "store"
    store.mkdir()
    port = free_port()
    conf = tmp_path / "h.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {store}/\n")
    p = LoggedProcess(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       f'mount --bind {passwd} /etc/passwd && exec "$0" "$@"',
                       HATO_BIN, "-c", str(conf)])
    try:
        p.wait_log(r"version \S+ running", timeout=15)
        assert "Warning: user 'mosquitto' does not exist; dropping privileges to 'nobody'" in p.log
        assert "Running as user 'nobody'" in p.log
        assert ids(f"/proc/{p.proc.pid}/status")[0] == [NOBODY.pw_uid] * 4
        assert os.stat(store / "mosquitto.db").st_uid == 0
        p.port, p.host = port, "127.0.0.1"
        sub = connected_client(p, "keep", clean=False)
        assert subscribe_ok(sub, 1, [("d/#", 1)]).codes == [1]  # committed as nobody
        leave(sub)
    finally:
        _, in_time = p.terminate()
        assert in_time and p.proc.returncode == 0, p.log
