"""hato-store: check and dump a persistence store for operators."""

import json
import os
import subprocess

from conftest import HATO_BIN
from mqttraw import PUBACK, connected_client, disconnect, publish, subscribe_ok
from persistkit import start

TOOL = os.path.join(os.path.dirname(HATO_BIN), "hato-store")


def run(*args):
    return subprocess.run([TOOL, *args], capture_output=True, text=True, timeout=60)


def test_check_and_dump_a_store(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    b = start(tmp_path, store)
    c = connected_client(b, "offline-sub", clean=False)
    subscribe_ok(c, 1, [("d/#", 1)])
    c.send(disconnect())
    c.expect_closed(5)
    with connected_client(b, "pub") as p:
        p.send(publish("d/1", b"queued", qos=1, pid=1))
        p.expect(PUBACK)
        p.send(publish("d/r", b"\x00\xff", qos=1, pid=2, retain=True))
        p.expect(PUBACK)
    # The tool reads a store in use.
    r = run("check", str(store))
    assert r.returncode == 0, r.stderr
    # One receiver each: the messages are inline in their queue entries.
    assert "1 sessions, 2 queue entries, 0 stored messages" in r.stdout, r.stdout
    b.stop()
    r = run("dump", str(store / "mosquitto.db"))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["problems"] == 0
    (s,) = d["sessions"]
    assert s["client_id"] == "offline-sub"
    assert s["subscriptions"][0]["filter"] == "d/#"
    assert [e["state"] for e in s["queue"]] == ["queued", "queued"]
    payloads = [e["message"].get("payload", e["message"].get("payload_base64"))
                for e in s["queue"]]
    assert payloads == ["queued", "AP8="]
    assert d["messages"] == []
    (ret,) = d["retained"]
    assert ret["topic"] == "d/r" and ret["payload_base64"] == "AP8="
    # Its publisher, kept for check_retain_source (anonymous: no user name).
    assert ret["source"] == {"client_id": "pub", "listener": 0}
    # -c takes the path from a config file.
    conf = tmp_path / "tool.conf"
    conf.write_text(f"persistence true\npersistence_location {store}\n")
    assert run("check", "-c", str(conf)).returncode == 0


def test_check_reports_a_damaged_store(tmp_path):
    (tmp_path / "mosquitto.db").write_bytes(b"\x01" * 20000)
    r = run("check", str(tmp_path))
    assert r.returncode == 2
    assert "mosquitto.db" in r.stderr and "not an LMDB file" in r.stderr
    r = run("check", str(tmp_path / "missing"))
    assert r.returncode == 2
