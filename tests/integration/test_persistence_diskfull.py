"""A commit that fails at run time (disk full) withholds the acknowledgements it
protected, is logged, and the broker keeps serving; once space is back, commits and
acknowledgements resume. Needs a small filesystem: a tmpfs mounted for the test (root)."""

import os
import subprocess

import pytest

from mqttraw import PINGREQ, PINGRESP, PUBACK, PUBLISH, connected_client, pingreq, publish, \
    subscribe_ok, drain
from persistkit import start


def mount_tmpfs(path, size):
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or not mount_tmpfs(mnt, "300k"):
        pytest.skip("needs root and mount(8) for a small tmpfs")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_withholds_acknowledgements_and_keeps_serving(tmp_path, small_fs):
    b = start(tmp_path, small_fs)
    c = connected_client(b, "filler")
    big = b"x" * 60000
    withheld = None
    for pid in range(1, 20):
        mark = b.mark()
        c.send(publish(f"big/{pid}", big, qos=1, pid=pid, retain=True))
        try:
            p = c.expect(PUBACK, timeout=3)
            assert p.pid == pid
        except TimeoutError:
            # ENOSPC, or EIO when LMDB's write came back short.
            b.wait_log(r"store commit failed .*: (no space left on device|Input/output "
                       r"error); 1 acknowledgement withheld", start=mark)
            withheld = pid
            break
    assert withheld, "the filesystem never filled up"
    # Still serving: this connection and new ones.
    c.send(pingreq())
    c.expect(PINGRESP)
    with connected_client(b, "other") as o:
        subscribe_ok(o, 1, [("live", 0)])
        o.send(publish("live", b"qos0", qos=0))
        assert o.expect(PUBLISH).payload == b"qos0"
    # Space comes back: the next commit succeeds and is acknowledged; the withheld one
    # never is (the client re-sends it after a reconnect).
    assert subprocess.run(["mount", "-o", "remount,size=8m", str(small_fs)]).returncode == 0
    c.send(publish("small", b"ok", qos=1, pid=100, retain=True))
    p = c.expect(PUBACK, timeout=10)
    assert p.pid == 100
    c.close()
    b.stop()
    b2 = start(tmp_path, small_fs)
    with connected_client(b2, "check") as r:
        subscribe_ok(r, 1, [("small", 0), ("big/1", 0)])
        got = {p.topic for p in drain(r) if p.type == PUBLISH}
        assert got == {"small", "big/1"}
    b2.stop()
