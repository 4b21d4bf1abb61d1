"""hato-pub and hato-sub against hato: message flows and the message and
subscription options (-t -m -f -l -s -n -q -r --repeat -M, -v -N -C -W -R -E
-T -U -c -x --retained-only --remove-retained), in MQTT 3.1, 3.1.1 and 5.

Each subscriber is known to be subscribed when it prints a retained sync
message (tests/cliutil.py); every process has a timeout, every -W bounds a
subscriber's life.
"""

import os
import signal
import subprocess

import pytest

from cliutil import Sub, conn_args, run, tool
from mqttraw import PUBLISH, SUBACK, RawClient, recv_publish, sub_opts, subscribe, v5_client

VERSIONS = ["31", "311", "5"]


def pub(broker, home, *args, version=None, check=0, input=None):
    return run("hato-pub", conn_args(broker, version) + list(args), home, input=input,
               check=check)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_round_trip_each_qos_and_version(broker, tmp_path, version, qos):
    s = Sub(broker, tmp_path, ["cli/rt/#"], count=2, args=["-v", "-q", qos, "-V", version])
    pub(broker, tmp_path, "-q", qos, "-t", "cli/rt/a", "-m", "hello world", version=version)
    pub(broker, tmp_path, "-q", qos, "-t", "cli/rt/b/c", "-m", "second", version=version)
    rc, out, err = s.finish()
    assert rc == 0, err
    assert out == b"cli/rt/a hello world\ncli/rt/b/c second\n"


def test_qos_is_minimum_of_publish_and_subscription(broker, tmp_path):
    s = Sub(broker, tmp_path, ["cli/q"], count=3, args=["-q", "1", "-F", "%q %p"])
    for q in (0, 1, 2):
        pub(broker, tmp_path, "-q", q, "-t", "cli/q", "-m", f"sent{q}")
    rc, out, _ = s.finish()
    assert rc == 0 and out == b"0 sent0\n1 sent1\n1 sent2\n"


def test_count_stops_after_n_messages(broker, tmp_path):
    s = Sub(broker, tmp_path, ["cli/count"], count=2)
    for i in range(4):
        pub(broker, tmp_path, "-t", "cli/count", "-m", f"m{i}")
    rc, out, _ = s.finish()
    assert rc == 0 and out == b"m0\nm1\n"


def test_timeout_exits_27_with_timed_out(broker, tmp_path):
    r = run("hato-sub", conn_args(broker) + ["-t", "cli/none", "-W", "1"], tmp_path)
    assert r.returncode == 27 and r.stderr == b"Timed out\n"


def test_retained_flag_and_clear_with_r_n(broker, tmp_path):
    pub(broker, tmp_path, "-r", "-q", "1", "-t", "cli/ret", "-m", "kept")
    s = Sub(broker, tmp_path, ["cli/ret"], count=1, args=["-F", "%r %t %p"])
    rc, out, _ = s.finish()
    assert rc == 0 and out == b"1 cli/ret kept\n"
    pub(broker, tmp_path, "-r", "-n", "-t", "cli/ret")  # MQTT-3.3.1-6: empty retained clears
    c, _ = v5_client(broker, "cli-ret-check")
    c.send(subscribe(1, [("cli/ret", sub_opts(0))], version=5))
    c.expect(SUBACK)
    c.expect_nothing(0.3)
    c.close()


def test_no_stale_R_skips_retained(broker, tmp_path):
    pub(broker, tmp_path, "-r", "-t", "cli/stale", "-m", "old")
    # -R hides the retained sync message too: wait for the SUBACK (-d) instead.
    s = Sub(broker, tmp_path, ["cli/stale"], count=1, args=["-R", "-d"], sync=False)
    s.wait_for(b"Subscribed (mid: 1): 0\n")
    pub(broker, tmp_path, "-t", "cli/stale", "-m", "new")
    rc, out, _ = s.finish()
    printed = [l for l in out.splitlines() if not l.startswith((b"Client ", b"Subscribed"))]
    assert rc == 0 and printed == [b"new"]
    pub(broker, tmp_path, "-r", "-n", "-t", "cli/stale")


def test_retained_only_exits_at_first_live_message(broker, tmp_path):
    pub(broker, tmp_path, "-r", "-t", "cli/ro/a", "-m", "r1")
    s = Sub(broker, tmp_path, ["cli/ro/#"], args=["--retained-only"])
    s.wait_for(b"r1")
    pub(broker, tmp_path, "-t", "cli/ro/b", "-m", "live")
    rc, out, _ = s.finish()
    assert rc == 0 and out == b"r1\n"
    pub(broker, tmp_path, "-r", "-n", "-t", "cli/ro/a")


def test_remove_retained_clears_what_it_receives(broker, tmp_path):
    pub(broker, tmp_path, "-r", "-t", "cli/rm/a", "-m", "x")
    pub(broker, tmp_path, "-r", "-t", "cli/rm/b", "-m", "y")
    s = Sub(broker, tmp_path, ["cli/rm/#"], args=["--remove-retained", "-T", "cli/rm/b", "-v"],
            wait_s=2)
    s.wait_for(b"cli/rm/a x\n")
    s.wait_for(b"cli/rm/a (null)\n")  # the clearing message comes back to us
    rc, out, _ = s.finish()
    assert rc == 27 and b"cli/rm/b" not in out
    # cli/rm/a was cleared, cli/rm/b (filtered out with -T) was kept.
    r = run("hato-sub", conn_args(broker) + ["-t", "cli/rm/#", "-v", "-W", "1"], tmp_path)
    assert r.stdout == b"cli/rm/b y\n"
    pub(broker, tmp_path, "-r", "-n", "-t", "cli/rm/b")


def test_filter_out_T(broker, tmp_path):
    s = Sub(broker, tmp_path, ["cli/t/#"], count=1, args=["-T", "cli/t/skip/#", "-v"])
    pub(broker, tmp_path, "-t", "cli/t/skip/x", "-m", "no")
    pub(broker, tmp_path, "-t", "cli/t/keep", "-m", "yes")
    rc, out, _ = s.finish()
    assert rc == 0 and out == b"cli/t/keep yes\n"


def test_exit_after_subscribe_E(broker, tmp_path):
    r = run("hato-sub", conn_args(broker) + ["-t", "cli/e", "-E", "-d"], tmp_path, check=0)
    assert b"Subscribed (mid: 1): 0" in r.stdout


def test_persistent_session_c_and_unsubscribe_U(broker, tmp_path):
    base = conn_args(broker) + ["-c", "-i", "cli-persist", "-q", "1"]
    run("hato-sub", base + ["-t", "cli/p", "-E"], tmp_path, check=0)
    pub(broker, tmp_path, "-q", "1", "-t", "cli/p", "-m", "queued")
    r = run("hato-sub", base + ["-t", "cli/p", "-C", "1", "-W", "5"], tmp_path, check=0)
    assert r.stdout == b"queued\n"
    # -U without -t: unsubscribe and exit; a later message is not queued.
    r = run("hato-sub", base + ["-U", "cli/p", "-d"], tmp_path, check=0)
    assert b"sending UNSUBSCRIBE (Mid: 1, Topic: cli/p)" in r.stdout
    pub(broker, tmp_path, "-q", "1", "-t", "cli/p", "-m", "not queued")
    r = run("hato-sub", conn_args(broker) + ["-i", "cli-persist", "-t", "cli/other", "-W", "1"],
            tmp_path)
    assert r.returncode == 27 and r.stdout == b""


def test_session_expiry_x_v5(broker, tmp_path):
    base = conn_args(broker, 5) + ["-c", "-i", "cli-x", "-q", "1", "-x", "60"]
    run("hato-sub", base + ["-t", "cli/x", "-E"], tmp_path, check=0)
    pub(broker, tmp_path, "-q", "1", "-t", "cli/x", "-m", "kept", version=5)
    r = run("hato-sub", base + ["-t", "cli/x", "-C", "1", "-W", "5"], tmp_path, check=0)
    assert r.stdout == b"kept\n"
    # -x 0 with clean start: the session ends with the connection.
    run("hato-sub", conn_args(broker, 5) + ["-i", "cli-x", "-x", "0", "-t", "cli/x", "-E"],
        tmp_path, check=0)


def test_null_message_n(broker, tmp_path):
    s = Sub(broker, tmp_path, ["cli/null"], count=1, args=["-F", "%t %p len=%l"])
    pub(broker, tmp_path, "-n", "-q", "1", "-t", "cli/null")
    rc, out, _ = s.finish()
    assert rc == 0 and out == b"cli/null  len=0\n"


def test_verbose_null_prints_null_marker(broker, tmp_path):
    s = Sub(broker, tmp_path, ["cli/vn"], count=1, args=["-v"])
    pub(broker, tmp_path, "-n", "-t", "cli/vn")
    rc, out, _ = s.finish()
    assert rc == 0 and out == b"cli/vn (null)\n"


def test_file_f_and_stdin_s_send_bytes_unchanged(broker, tmp_path):
    data = bytes(range(256)) * 40 + b"\n\x00end"
    f = tmp_path / "payload.bin"
    f.write_bytes(data)
    s = Sub(broker, tmp_path, ["cli/bin"], count=2, args=["-N"])
    pub(broker, tmp_path, "-q", "1", "-t", "cli/bin", "-f", str(f))
    pub(broker, tmp_path, "-q", "2", "-t", "cli/bin", "-s", input=data)
    rc, out, _ = s.finish()
    assert rc == 0 and out == data + data


def test_missing_file_is_input_error(broker, tmp_path):
    r = pub(broker, tmp_path, "-t", "x", "-f", str(tmp_path / "nope"), check=8)
    assert b"nope" in r.stderr and r.stderr.count(b"\n") == 1


def test_stdin_lines_l_one_connection(broker, tmp_path):
    s = Sub(broker, tmp_path, ["cli/lines"], count=4, args=["-v"])
    pub(broker, tmp_path, "-l", "-q", "1", "-t", "cli/lines", "-d", input=b"one\n\ntwo\nlast")
    rc, out, _ = s.finish()
    assert rc == 0
    # Empty lines are empty messages; a last line without newline is sent.
    assert out == b"cli/lines one\ncli/lines (null)\ncli/lines two\ncli/lines last\n"


def test_stdin_lines_many_messages_all_delivered(broker, tmp_path):
    n = 500
    s = Sub(broker, tmp_path, ["cli/many"], count=n, args=["-q", "1"])
    r = pub(broker, tmp_path, "-l", "-q", "1", "-t", "cli/many",
            input=b"".join(b"%d\n" % i for i in range(n)))
    assert r.stdout.count(b"sending CONNECT") == 0
    rc, out, _ = s.finish()
    assert rc == 0 and out.split() == [b"%d" % i for i in range(n)]


def test_repeat_and_repeat_delay(broker, tmp_path):
    s = Sub(broker, tmp_path, ["cli/rep"], count=3)
    r = pub(broker, tmp_path, "-t", "cli/rep", "-m", "again", "--repeat", "3",
            "--repeat-delay", "0.05", "-d")
    assert r.stdout.count(b"sending CONNECT") == 1
    assert r.stdout.count(b"sending PUBLISH") == 3
    rc, out, _ = s.finish()
    assert rc == 0 and out == b"again\n" * 3


def test_max_inflight_M(broker, tmp_path):
    s = Sub(broker, tmp_path, ["cli/m"], count=30)
    pub(broker, tmp_path, "-l", "-q", "2", "-M", "1", "-t", "cli/m",
        input=b"".join(b"%d\n" % i for i in range(30)))
    rc, out, _ = s.finish()
    assert rc == 0 and out.split() == [b"%d" % i for i in range(30)]


def test_will_options_on_abnormal_exit(broker, tmp_path):
    watcher, _ = v5_client(broker, "cli-will-watch")
    watcher.send(subscribe(1, [("cli/will/#", sub_opts(1, retain_as_published=True))], version=5))
    watcher.expect(SUBACK)
    env = dict(os.environ, HOME=str(tmp_path))
    proc = subprocess.Popen([tool("hato-pub")] + conn_args(broker, 5) + [
        "-l", "-q", "1", "-t", "cli/will/data", "-i", "cli-will",
        "--will-topic", "cli/will/gone", "--will-payload", "dead", "--will-qos", "1",
        "--will-retain", "-D", "will", "content-type", "text/plain"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        proc.stdin.write(b"alive\n")
        proc.stdin.flush()
        m = recv_publish(watcher)
        assert (m.topic, m.payload) == ("cli/will/data", b"alive")
        proc.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker sends the will
        proc.wait(timeout=10)
        m = recv_publish(watcher)
        assert (m.topic, m.payload, m.retain, m.qos) == ("cli/will/gone", b"dead", True, 1)
        assert m.props.get("content_type") == "text/plain"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        watcher.close()
    pub(broker, tmp_path, "-r", "-n", "-t", "cli/will/gone")


def test_v5_properties_D_reach_the_subscriber(broker, tmp_path):
    s = Sub(broker, tmp_path, ["cli/props"], count=1, args=["-V", "5", "-F", "%C|%R|%D|%P|%F|%p"])
    pub(broker, tmp_path, "-t", "cli/props", "-m", "body", "-V", "5",
        "-D", "publish", "content-type", "text/plain",
        "-D", "publish", "response-topic", "cli/reply",
        "-D", "publish", "correlation-data", "c0rr",
        "-D", "publish", "user-property", "k1", "v1",
        "-D", "publish", "user-property", "k2", "v2",
        "-D", "publish", "payload-format-indicator", "1")
    rc, out, _ = s.finish()
    assert rc == 0 and out == b"text/plain|cli/reply|c0rr|k1:v1 k2:v2|1|body\n"


def test_v5_subscription_identifier_D_subscribe(broker, tmp_path):
    s = Sub(broker, tmp_path, ["cli/sid"], count=1,
            args=["-V", "5", "-D", "subscribe", "subscription-identifier", "42", "-F", "%S %p"])
    pub(broker, tmp_path, "-t", "cli/sid", "-m", "x")
    rc, out, _ = s.finish()
    assert rc == 0 and out == b"42 x\n"


def test_unix_socket(broker_factory, tmp_path):
    path = str(tmp_path / "mqtt.sock")
    b = broker_factory(f"listener 0 {path}\n")
    s = Sub(b, tmp_path, ["cli/unix"], count=1)
    run("hato-pub", ["--unix", path, "-t", "cli/unix", "-m", "via unix", "-q", "1"], tmp_path,
        check=0)
    rc, out, _ = s.finish()
    assert rc == 0 and out == b"via unix\n"


def test_bind_address_A_and_nodelay(broker, tmp_path):
    s = Sub(broker, tmp_path, ["cli/bind"], count=1)
    pub(broker, tmp_path, "-A", "127.0.0.1", "--nodelay", "-t", "cli/bind", "-m", "bound")
    rc, out, _ = s.finish()
    assert rc == 0 and out == b"bound\n"


def test_client_id_i_and_prefix_I_are_used(broker, tmp_path):
    r = pub(broker, tmp_path, "-i", "my-id", "-t", "cli/id", "-m", "x", "-d")
    assert r.stdout.startswith(b"Client my-id sending CONNECT\n")
    r = pub(broker, tmp_path, "-I", "pfx-", "-t", "cli/id", "-m", "x", "-d")
    assert r.stdout.startswith(b"Client pfx-")


def test_url_L(broker, tmp_path):
    s = Sub(broker, tmp_path, ["cli/url/t"], count=1)
    run("hato-pub", ["-L", f"mqtt://{broker.host}:{broker.port}/cli/url/t", "-m", "from url"],
        tmp_path, check=0)
    rc, out, _ = s.finish()
    assert rc == 0 and out == b"from url\n"


def test_sub_reaches_paho_publisher_messages_in_order(broker, tmp_path):
    s = Sub(broker, tmp_path, ["cli/order"], count=50, args=["-q", "2"])
    c = RawClient(broker, version=4)
    c.connect("cli-order-pub")
    for i in range(50):
        from mqttraw import publish
        c.send(publish("cli/order", b"%d" % i, qos=1, pid=i + 1))
        c.recv()
    c.close()
    rc, out, _ = s.finish()
    assert rc == 0 and out.split() == [b"%d" % i for i in range(50)]


def test_sub_reconnects_after_broker_restart(broker_factory, tmp_path):
    """Like mosquitto_sub: a lost connection is re-established (every second)
    and the subscriptions are made again."""
    b1 = broker_factory()
    s = Sub(b1, tmp_path, ["cli/rc"], count=2, args=["-v", "-d", "-q", "1"], wait_s=30)
    s.wait_count(b"Subscribed (mid:", 1)
    pub(b1, tmp_path, "-q", "1", "-t", "cli/rc", "-m", "one")
    s.wait_for(b"cli/rc one\n")
    b1.stop()
    s.wait_for(b"lost the connection")
    b2 = broker_factory(port=b1.port)
    s.wait_count(b"Subscribed (mid:", 2)
    pub(b2, tmp_path, "-q", "1", "-t", "cli/rc", "-m", "two")
    rc, out, err = s.finish()
    assert rc == 0, err
    printed = [l for l in out.splitlines() if l.startswith(b"cli/rc ")]
    assert printed == [b"cli/rc one", b"cli/rc two"]


def test_sub_first_connection_failure_is_not_retried(tmp_path):
    from cliutil import free_closed_port
    r = run("hato-sub", ["-h", "127.0.0.1", "-p", free_closed_port(), "-t", "x", "-W", "5"],
            tmp_path)
    assert r.returncode == 2


def test_sigint_disconnects_cleanly(broker, tmp_path):
    """SIGINT: DISCONNECT and exit 0 (mosquitto_sub's behaviour), so the
    broker does not publish the will."""
    s = Sub(broker, tmp_path, ["cli/int"], args=["-d", "--will-topic", "cli/int/will"],
            sync=False)
    s.wait_for(b"Subscribed (mid: 1)")
    s.proc.send_signal(signal.SIGINT)
    rc, out, _ = s.finish()
    assert rc == 0 and out.endswith(b"sending DISCONNECT\n")


def test_pub_lines_survive_broker_restart(broker_factory, tmp_path):
    """hato-pub -l reconnects like mosquitto_pub -l; lines read meanwhile
    wait in the pipe and go out once connected again."""
    b1 = broker_factory()
    s1 = Sub(b1, tmp_path, ["cli/pl"], count=1)
    proc = subprocess.Popen([tool("hato-pub")] + conn_args(b1) + ["-l", "-q", "1", "-t", "cli/pl",
                                                                  "-d"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, HOME=str(tmp_path)))
    try:
        proc.stdin.write(b"one\n")
        proc.stdin.flush()
        rc, out, _ = s1.finish()
        assert rc == 0 and out == b"one\n"
        b1.stop()
        b2 = broker_factory(port=b1.port)
        s2 = Sub(b2, tmp_path, ["cli/pl"], count=1)
        proc.stdin.write(b"two\n")
        proc.stdin.close()
        rc, out, _ = s2.finish()
        assert rc == 0 and out == b"two\n"
        proc.wait(timeout=15)
        o, e = proc.stdout.read(), proc.stderr.read()
        assert proc.returncode == 0, e
        assert b"lost the connection" in o and o.count(b"received CONNACK") == 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
