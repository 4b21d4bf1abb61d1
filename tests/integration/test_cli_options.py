"""hato-pub/hato-sub connection options, options files, passwords, errors and
exit codes, -d tracing.

What a client puts in CONNECT is checked byte by byte on a CaptureBroker (a
real loopback socket that records the client's packets, tests/cliutil.py);
the rest runs against hato.
"""

import os
import re

import pytest

from cliutil import CaptureBroker, Sub, conn_args, free_closed_port, run, tool


def capture_pub(tmp_path, args, code=0, env=None, check=0, program="hato-pub"):
    cb = CaptureBroker(connack_code=code)
    try:
        a = ["-h", "127.0.0.1", "-p", cb.port] + list(args)
        if program == "hato-pub" and "-m" not in a and "-n" not in a:
            a += ["-m", "x"]
        if program == "hato-pub" and "-t" not in a and "-L" not in a:
            a += ["-t", "t"]
        r = run(program, a, tmp_path, env=env, check=check)
        cb.wait_closed()
        return cb, r
    finally:
        cb.close()


# ---- what CONNECT carries -------------------------------------------------

def test_defaults_311_clean_keepalive_60_empty_id(tmp_path):
    cb, _ = capture_pub(tmp_path, [])
    c = cb.connect_packet()
    assert (c["name"], c["level"], c["clean"], c["keepalive"], c["client_id"]) == \
        ("MQTT", 4, True, 60, "")
    assert "username" not in c and "password" not in c


@pytest.mark.parametrize("v,name,level", [("mqttv31", "MQIsdp", 3), ("31", "MQIsdp", 3),
                                          ("mqttv311", "MQTT", 4), ("311", "MQTT", 4),
                                          ("mqttv5", "MQTT", 5), ("5", "MQTT", 5)])
def test_protocol_version_V(tmp_path, v, name, level):
    cb, _ = capture_pub(tmp_path, ["-V", v])
    c = cb.connect_packet()
    assert (c["name"], c["level"]) == (name, level)
    if level == 3:  # 3.1 has no server-assigned ids (MQTT 3.1: 1..23 characters)
        assert re.fullmatch(r"hato_pub_\d+", c["client_id"])


def test_keepalive_k_id_i_clean_c_user_password(tmp_path):
    cb, _ = capture_pub(tmp_path, ["-k", "30", "-i", "cid", "-c", "-u", "alice", "-P", "s3cret"])
    c = cb.connect_packet()
    assert (c["keepalive"], c["client_id"], c["clean"]) == (30, "cid", False)
    assert (c["username"], c["password"]) == ("alice", b"s3cret")


def test_id_prefix_I(tmp_path):
    cb, _ = capture_pub(tmp_path, ["-I", "pre-"])
    assert re.fullmatch(r"pre-\d+", cb.connect_packet()["client_id"])


def test_v5_session_expiry_x_and_c_default(tmp_path):
    cb, _ = capture_pub(tmp_path, ["-V", "5", "-x", "120"])
    assert cb.connect_packet()["props"]["session_expiry"] == 120
    cb, _ = capture_pub(tmp_path, ["-V", "5", "-c", "-i", "p"])
    assert cb.connect_packet()["props"]["session_expiry"] == 0xFFFFFFFF  # -c alone: never expires
    cb, _ = capture_pub(tmp_path, ["-V", "5", "-x", "-1"])
    assert cb.connect_packet()["props"]["session_expiry"] == 0xFFFFFFFF


def test_v5_connect_properties_D(tmp_path):
    cb, _ = capture_pub(tmp_path, ["-V", "5", "-D", "connect", "receive-maximum", "7",
                                   "-D", "connect", "user-property", "who", "me",
                                   "-D", "connect", "maximum-packet-size", "100000"])
    p = cb.connect_packet()["props"]
    assert p["receive_maximum"] == 7 and p["maximum_packet_size"] == 100000
    assert p["user"] == [("who", "me")]


def test_will_fields(tmp_path):
    cb, _ = capture_pub(tmp_path, ["-V", "5", "--will-topic", "w/t", "--will-payload", "bye",
                                   "--will-qos", "2", "--will-retain",
                                   "-D", "will", "will-delay-interval", "5"])
    c = cb.connect_packet()
    assert (c["will_topic"], c["will_payload"], c["will_qos"], c["will_retain"]) == \
        ("w/t", b"bye", 2, True)
    assert c["will_props"]["will_delay"] == 5


def test_url_with_user_and_password(tmp_path):
    cb = CaptureBroker()
    try:
        run("hato-pub", ["-L", f"mqtt://bob:pw@127.0.0.1:{cb.port}/url/topic", "-m", "x", "-d"],
            tmp_path, check=0)
        cb.wait_closed()
        c = cb.connect_packet()
        assert (c["username"], c["password"]) == ("bob", b"pw")
        pubs = [p for p in cb.packets if p[0] == 3]
        assert pubs and pubs[0][2][2:2 + len(b"url/topic")] == b"url/topic"
    finally:
        cb.close()


def test_websocket_url_needs_a_topic_from_t(tmp_path):
    """-L ws://host:port/path: the path is the HTTP path, so the topic must come from -t."""
    r = run("hato-pub", ["-L", "ws://127.0.0.1:9001/mqtt", "-m", "x"], tmp_path, check=1)
    assert b"topic" in r.stderr and r.stderr.count(b"\n") == 1


# ---- passwords: environment and options files ----------------------------

def test_hato_password_environment(tmp_path):
    cb, _ = capture_pub(tmp_path, ["-u", "carol"], env={"HATO_PASSWORD": "from-env"})
    assert cb.connect_packet()["password"] == b"from-env"


def test_P_wins_over_hato_password(tmp_path):
    cb, _ = capture_pub(tmp_path, ["-u", "carol", "-P", "cli"], env={"HATO_PASSWORD": "env"})
    assert cb.connect_packet()["password"] == b"cli"


def write_options(path, text, mode=0o600):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def test_default_options_file_pub(tmp_path):
    write_options(tmp_path / ".config" / "hato" / "pub",
                  "# comment\n-u dave\n-P pass word\n-k 42\n-m message with spaces\n")
    cb, r = capture_pub(tmp_path, [])
    c = cb.connect_packet()
    assert (c["username"], c["password"], c["keepalive"]) == ("dave", b"pass word", 42)
    assert b"Warning" not in r.stderr  # mode 600: no warning


def test_command_line_overrides_options_file(tmp_path):
    write_options(tmp_path / ".config" / "hato" / "pub", "-k 42\n-i fromfile\n")
    cb, _ = capture_pub(tmp_path, ["-k", "10"])
    c = cb.connect_packet()
    assert (c["keepalive"], c["client_id"]) == (10, "fromfile")


def test_xdg_config_home_options_file(tmp_path):
    xdg = tmp_path / "xdg"
    write_options(xdg / "hato" / "pub", "-i xdg-id\n")
    cb, _ = capture_pub(tmp_path, [], env={"XDG_CONFIG_HOME": str(xdg)})
    assert cb.connect_packet()["client_id"] == "xdg-id"


def test_options_file_o_and_readable_warning(tmp_path):
    f = tmp_path / "opts"
    write_options(f, "-u erin\n-P secret\n", mode=0o644)
    cb, r = capture_pub(tmp_path, ["-o", f])
    assert cb.connect_packet()["username"] == "erin"
    err = r.stderr.decode()
    assert err.startswith("Warning: options file") and "readable" in err and "chmod 600" in err
    assert err.count("\n") == 1
    cb, r = capture_pub(tmp_path, ["-o", f, "--quiet"])
    assert r.stderr == b""


def test_sub_options_file(broker, tmp_path):
    write_options(tmp_path / ".config" / "hato" / "sub", "-v\n-q 1\n")
    s = Sub(broker, tmp_path, ["opt/sub"], count=1)
    run("hato-pub", conn_args(broker) + ["-t", "opt/sub", "-m", "hi"], tmp_path, check=0)
    rc, out, _ = s.finish()
    assert rc == 0 and out == b"opt/sub hi\n"


def test_bad_options_file_line(tmp_path):
    f = tmp_path / "bad"
    write_options(f, "-k 42\n--frobnicate\n")
    r = run("hato-pub", ["-o", f, "-t", "t", "-m", "x"], tmp_path, check=1)
    assert r.stderr == f"Error: {f}:2: unknown option '--frobnicate'\n".encode()


# ---- errors and exit codes ---------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (["-q", "3"], b"-q: expected a QoS 0, 1 or 2, got '3'"),
    (["-p", "0"], b"-p: expected a port 1..65535, got '0'"),
    (["-V", "6"], b"-V: expected mqttv5, mqttv311 or mqttv31"),
    (["-k", "2"], b"-k: expected seconds"),
    (["--bogus"], b"unknown option '--bogus'"),
    (["-t", "a/#"], b"-t: invalid topic"),
    (["-m", "a", "-n"], b"give only one of"),
    (["-D", "publish", "receive-maximum", "1"], b"not allowed in publish"),
    (["-c"], b"-c needs a client id"),
    (["--will-payload", "x"], b"--will-payload needs --will-topic"),
    (["--psk", "abcd"], b"--psk needs --psk-identity"),
    (["--cert", "c.pem"], b"--cert and --key"),
    (["-p"], b"-p: expects a value"),
])
def test_bad_options_exit_1_with_one_line(tmp_path, args, needle):
    a = ["-t", "t"] + ([] if "-m" in args else ["-m", "x"]) + list(args)
    r = run("hato-pub", a, tmp_path, check=1)
    assert needle in r.stderr and r.stderr.count(b"\n") == 1, r.stderr


def test_sub_needs_topic(tmp_path):
    r = run("hato-sub", ["-p", "1883"], tmp_path, check=1)
    assert b"topic" in r.stderr


def test_connection_refused_exit_2(tmp_path):
    port = free_closed_port()
    r = run("hato-pub", ["-h", "127.0.0.1", "-p", port, "-t", "t", "-m", "x"], tmp_path, check=2)
    assert r.stderr == f"Error: cannot connect to 127.0.0.1 port {port}: Connection refused\n".encode()
    r = run("hato-sub", ["-h", "127.0.0.1", "-p", port, "-t", "t"], tmp_path, check=2)
    assert b"Connection refused" in r.stderr


def test_unknown_host_exit_2(tmp_path):
    r = run("hato-pub", ["-h", "host.invalid", "-t", "t", "-m", "x"], tmp_path, check=2)
    assert r.stderr.startswith(b"Error: cannot resolve host.invalid")


@pytest.mark.parametrize("version,code,rc,words", [
    ("311", 5, 5, "not authorised"), ("311", 4, 5, "bad user name or password"),
    ("311", 2, 4, "identifier rejected"), ("5", 0x87, 5, "Not authorized"),
    ("5", 0x86, 5, "Bad user name or password"), ("5", 0x88, 4, "Server unavailable"),
])
def test_connack_refusal_in_words_and_exit_code(tmp_path, version, code, rc, words):
    cb, r = capture_pub(tmp_path, ["-V", version], code=code, check=rc)
    err = r.stderr.decode()
    assert err.startswith("Error: connection refused by the broker: ") and words.lower() in \
        err.lower() and err.count("\n") == 1, err


def test_tls_to_plain_listener_exit_3(broker, tmp_path):
    ca = tmp_path / "none.pem"
    r = run("hato-pub", conn_args(broker) + ["--cafile", ca, "-t", "t", "-m", "x"], tmp_path,
            check=3)
    assert b"CA" in r.stderr and r.stderr.count(b"\n") == 1


def test_quiet_suppresses_errors(tmp_path):
    r = run("hato-pub", ["-p", free_closed_port(), "-t", "t", "-m", "x", "--quiet"], tmp_path,
            check=2)
    assert r.stderr == b""


def test_help_and_version(tmp_path):
    for name in ("hato-pub", "hato-sub", "hato-rr"):
        r = run(name, ["--help"], tmp_path, check=0)
        assert b"Usage:" in r.stdout and b"Exit codes" in r.stdout
        r = run(name, ["--version"], tmp_path, check=0)
        assert r.stdout.startswith(name.encode() + b" version ")


# ---- -d in mosquitto's style -------------------------------------------------

def test_debug_trace_qos2_publish(broker, tmp_path):
    r = run("hato-pub", conn_args(broker) + ["-i", "dbg", "-q", "2", "-r", "-t", "d/t", "-m",
                                             "hello", "-d"], tmp_path, check=0)
    assert r.stdout.decode().splitlines() == [
        "Client dbg sending CONNECT",
        "Client dbg received CONNACK (0)",
        "Client dbg sending PUBLISH (d0, q2, r1, m1, 'd/t', ... (5 bytes))",
        "Client dbg received PUBREC (Mid: 1)",
        "Client dbg sending PUBREL (m1)",
        "Client dbg received PUBCOMP (Mid: 1, RC:0)",
        "Client dbg sending DISCONNECT",
    ]
    run("hato-pub", conn_args(broker) + ["-r", "-n", "-t", "d/t"], tmp_path, check=0)


def test_debug_trace_subscriber(broker, tmp_path):
    s = Sub(broker, tmp_path, ["d/s"], count=1, args=["-d", "-q", "1", "-i", "dsub", "-V", "5"],
            sync=False)
    s.wait_for(b"Subscribed (mid: 1): 1\n")
    run("hato-pub", conn_args(broker) + ["-q", "1", "-t", "d/s", "-m", "yo"], tmp_path, check=0)
    rc, out, _ = s.finish()
    lines = out.decode().splitlines()
    assert rc == 0
    assert lines[:4] == ["Client dsub sending CONNECT", "Client dsub received CONNACK (0)",
                         "Client dsub sending SUBSCRIBE (Mid: 1, Topic: d/s, QoS: 1, Options: 0x00)",
                         "Client dsub received SUBACK"]
    assert re.fullmatch(r"Client dsub received PUBLISH \(d0, q1, r0, m\d+, 'd/s', \.\.\. \(2 bytes\)\)",
                        lines[5])
    assert re.fullmatch(r"Client dsub sending PUBACK \(m\d+, rc0\)", lines[6])
    assert lines[7:] == ["yo", "Client dsub sending DISCONNECT"]


def test_keepalive_pingreq_is_traced(tmp_path):
    """-k 5: with nothing else to send, the client pings (MQTT-3.1.2-23)."""
    cb = CaptureBroker()
    try:
        r = run("hato-sub", ["-h", "127.0.0.1", "-p", cb.port, "-k", "5", "-t", "t", "-W", "7",
                             "-d"], tmp_path, check=27)
        assert b"sending PINGREQ" in r.stdout and b"received PINGRESP" in r.stdout
    finally:
        cb.close()


def test_programs_exist_next_to_broker():
    for name in ("hato-pub", "hato-sub", "hato-rr"):
        assert os.access(tool(name), os.X_OK)
