"""A store that cannot be used stops start-up with its path and the reason, and nothing
on disk is changed: garbage or truncated file, a Mosquitto database, a missing or
read-only directory."""

import os
import shutil
import stat
import tempfile

import pytest

from conftest import HATO_BIN, LoggedProcess, free_port
from mqttraw import connected_client, disconnect
from persistkit import start, store_config


def refused(tmp_path, store_dir, user=None, conf_dir=None):
    """Start hato on store_dir; it must exit with status 1. Returns its log."""
    conf_dir = conf_dir or str(tmp_path)
    conf = os.path.join(conf_dir, "refuse.conf")
    with open(conf, "w") as f:
        f.write(f"listener {free_port()} 127.0.0.1\nallow_anonymous true\n")
        f.write(store_config(store_dir))
    cmd = [HATO_BIN, "-c", conf]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + cmd
    p = LoggedProcess(cmd)
    rc = p.proc.wait(timeout=30)
    p.reader.join(timeout=10)
    assert rc == 1, f"exit status {rc}:\n{p.log}"
    assert "running" not in p.log
    for mark in ("ERROR: AddressSanitizer", "runtime error:"):
        assert mark not in p.log, p.log
    return p.log


def snapshot(d):
    return {n: open(os.path.join(d, n), "rb").read() for n in sorted(os.listdir(d))}


def make_store(tmp_path, store):
    """A real store with a session, a queued message and a retained message."""
    b = start(tmp_path, store)
    with connected_client(b, "s", clean=False) as c:
        c.send(bytes([0x82, 6, 0, 1, 0, 1, ord("q"), 1]))  # SUBSCRIBE q QoS 1
        c.expect(9)
        c.send(disconnect())
    with connected_client(b, "p") as p:
        p.send(bytes([0x33, 9, 0, 1, ord("q"), 0, 1]) + b"data")  # retained QoS 1 on q
        p.expect(4)
    b.stop()


def test_garbage_file_is_refused_and_kept(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (store / "mosquitto.db").write_bytes(os.urandom(3) + b"\x00" * 4 + os.urandom(70000))
    before = snapshot(store)
    log = refused(tmp_path, store)
    assert f"{store}/mosquitto.db" in log and "not an LMDB file" in log, log
    assert snapshot(store) == before


def test_truncated_file_is_refused_and_kept(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    make_store(tmp_path, store)
    db = store / "mosquitto.db"
    data = db.read_bytes()
    db.write_bytes(data[:len(data) // 2])
    before = (store / "mosquitto.db").read_bytes()
    log = refused(tmp_path, store)
    assert f"{store}/mosquitto.db" in log and ("truncated" in log or "LMDB" in log), log
    assert (store / "mosquitto.db").read_bytes() == before


def test_damaged_mosquitto_database_is_refused_and_kept(tmp_path):
    # A Mosquitto file is imported (test_mosquitto_import.py); one that is not sound
    # is refused with its offset and kept as it is.
    store = tmp_path / "store"
    store.mkdir()
    # Mosquitto's file magic, then zeros: format version 0.
    (store / "mosquitto.db").write_bytes(b"\x00\xb5\x00mosquitto db" + b"\x00" * 100)
    before = snapshot(store)
    log = refused(tmp_path, store)
    assert "mosquitto.db: offset 19: format version 0 is not supported" in log, log
    assert "nothing was written" in log, log
    assert snapshot(store) == before


def test_missing_directory_is_refused_not_created(tmp_path):
    store = tmp_path / "no" / "such"
    log = refused(tmp_path, store)
    assert f"{store}" in log and "No such file or directory" in log, log
    assert not (tmp_path / "no").exists()


def test_read_only_directory_is_refused_and_kept(tmp_path):
    # root ignores permissions: run the broker as nobody then, on files it may read.
    top = tempfile.mkdtemp(prefix="hato-ro-")
    try:
        os.chmod(top, 0o755)
        store = os.path.join(top, "store")
        os.mkdir(store)
        make_store(tmp_path, store)
        os.chmod(store, 0o555)
        before = snapshot(store)
        user = 65534 if os.geteuid() == 0 else None
        if user is not None and not shutil.which("setpriv"):
            pytest.skip("setpriv is needed to drop root for this test")
        log = refused(tmp_path, store, user=user, conf_dir=top)
        assert store in log and "not writable" in log, log
        assert snapshot(store) == before
    finally:
        os.chmod(os.path.join(top, "store"), 0o755)
        shutil.rmtree(top)


def test_damaged_record_is_refused_and_reported(tmp_path):
    """A store LMDB can open but with a record hato cannot decode (here the session record's
    format byte overwritten in place, as a bad disk block would): start-up refuses naming
    the table, changes nothing, and hato-store check reports it (exit 1)."""
    import subprocess
    from conftest import HATO_BIN
    store = tmp_path / "store"
    store.mkdir()
    b = start(tmp_path, store)
    with connected_client(b, "session-to-damage", clean=False) as c:
        c.send(disconnect())
        c.expect_closed(5)
    b.stop()
    db = store / "mosquitto.db"
    data = bytearray(db.read_bytes())
    key = b"session-to-damage"
    hits = 0
    i = data.find(key)
    while i >= 0:
        j = i + len(key)
        if data[j] == 1:  # the record's format byte follows its key in the leaf node
            data[j] = 0x7F
            hits += 1
        i = data.find(key, j)
    assert hits, "session record not found in the file"
    db.write_bytes(bytes(data))
    log = refused(tmp_path, store)
    assert "damaged (bad record in table 'sess')" in log, log
    assert db.read_bytes() == bytes(data)  # (the -lock file is LMDB's run-time state)
    tool = os.path.join(os.path.dirname(HATO_BIN), "hato-store")
    r = subprocess.run([tool, "check", str(store)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "undecodable session" in r.stderr, (r.stdout, r.stderr)
