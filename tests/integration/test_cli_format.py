"""hato-sub's output compared byte for byte with mosquitto_sub's on the same
messages: payload-only, -v, -N, every -F code with flags, width and
precision, \\ escapes, %j/%J (with --pretty). Both subscribers run at once
against hato and receive the same publications; time-dependent fields
(%I %U %j's "tst" @ codes) are checked by pattern instead.
"""

import re
import shutil

import pytest

from cliutil import Sub, conn_args, run

MOSQ_SUB = shutil.which("mosquitto_sub")
pytestmark = pytest.mark.skipif(not MOSQ_SUB, reason="mosquitto_sub not installed "
                                                      "(Debian package mosquitto-clients)")

MESSAGES = [
    # (args to hato-pub)
    ["-t", "fmt/a", "-m", "hello world", "-q", "1"],
    ["-t", "fmt/b/c", "-m", "{\"temp\": 21.5, \"ok\": true}"],
    ["-t", "fmt/n", "-n"],
    ["-t", "fmt/props", "-m", "p", "-V", "5",
     "-D", "publish", "content-type", "text/plain",
     "-D", "publish", "response-topic", "fmt/reply",
     "-D", "publish", "correlation-data", "corr-1",
     "-D", "publish", "payload-format-indicator", "1",
     "-D", "publish", "user-property", "k1", "v1",
     "-D", "publish", "user-property", "k2", "v2"],
    ["-t", "fmt/bin", "-m", "\x01\x7f\u00e9x"],
    # QoS 2 last: mosquitto_sub hands a QoS 2 message over on PUBREL, hato-sub
    # on PUBLISH, so a message published right after it could come out
    # before it in one of the two outputs and not in the other.
    ["-t", "fmt/q2", "-m", "with \"quotes\" and \\ and tab\t.", "-q", "2"],
]


def compare(broker, tmp_path, args, version="5", messages=MESSAGES, mask=None):
    """Run hato-sub and mosquitto_sub side by side with args; return both outputs."""
    n = len(messages)
    mode = "payload" if "-N" in args else "newline"
    subs = [Sub(broker, tmp_path, ["fmt/#"], count=n, program=p, sync_mode=mode,
                args=["-q", "2", "-V", version] + list(args))
            for p in ("hato-sub", MOSQ_SUB)]
    for m in messages:
        run("hato-pub", conn_args(broker) + m, tmp_path, check=0)
    results = [s.finish() for s in subs]
    (rc_h, out_h, err_h), (rc_m, out_m, err_m) = results
    assert rc_h == 0 and rc_m == 0, (err_h, err_m)
    out_h, out_m = unsync(out_h), unsync(out_m)
    if mask:
        out_h, out_m = mask(out_h), mask(out_m)
    assert out_h == out_m, f"\nhato-sub:     {out_h!r}\nmosquitto_sub: {out_m!r}"
    assert err_h == err_m
    return out_h


SYNC = re.compile(rb"sync/\d+/\d+|ready-\d+-\d+")


def unsync(out):
    """The two subscribers' sync messages differ only in their numbers."""
    return SYNC.sub(b"SYNC", out)


@pytest.mark.parametrize("args", [
    [],
    ["-v"],
    ["-N"],
    ["-v", "-N"],
    ["-F", "%t|%p|%q|%r|%l|%m|%x|%X|%%"],
    ["-F", "%C|%R|%D|%F|%P|%E|%A|%S"],
    ["-F", "[%10t][%-10t][%.3t][%10.3t][%-10.3t]"],
    ["-F", "[%5l][%-5l][%05l][%-05l][%5q][%5r]"],
    ["-F", "[%12p][%-12p][%012p][%4x][%-4X][%-p]"],
    ["-F", "[%8C][%-8C][%.2C][%8R][%.3R][%5F][%05E]"],
    ["-F", "tab\\there\\\\back\\e[0m\\0nul\\a\\r\\v\\nnext"],
    ["-F", "@@%%"],
    ["-F", "%p", "-N"],
])
def test_output_matches_mosquitto_sub(broker, tmp_path, args):
    compare(broker, tmp_path, args)


@pytest.mark.parametrize("version", ["311", "5"])
def test_verbose_matches_in_311(broker, tmp_path, version):
    compare(broker, tmp_path, ["-v"], version=version, messages=MESSAGES[:3] + MESSAGES[-1:])


TST = re.compile(rb'"tst":\s*"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z[+-]\d{4}"')


def mask_tst(out):
    return TST.sub(b'"tst":"T"', out)


@pytest.mark.parametrize("args", [["-F", "%j"], ["-F", "%J"], ["-F", "%j", "--pretty"],
                                  ["-F", "%J", "--pretty"]])
def test_json_matches_mosquitto_sub(broker, tmp_path, args):
    out = compare(broker, tmp_path, args, mask=mask_tst)
    assert out.count(b'"tst":"T"') >= 2


def test_json_fields(broker, tmp_path):
    s = Sub(broker, tmp_path, ["fmt/j"], count=1, args=["-F", "%j", "-q", "1"],
            sync_mode="newline")
    run("hato-pub", conn_args(broker) + ["-t", "fmt/j", "-m", "x\"y", "-q", "1", "-r"], tmp_path,
        check=0)
    rc, out, _ = s.finish()
    assert rc == 0
    assert re.fullmatch(rb'\{"tst":"[^"]+","topic":"fmt/j","qos":1,"retain":0,"payloadlen":3,'
                        rb'"mid":\d+,"payload":"x\\"y"\}\n', out), out
    run("hato-pub", conn_args(broker) + ["-t", "fmt/j", "-r", "-n"], tmp_path, check=0)


def test_time_codes_have_their_formats(broker, tmp_path):
    s = Sub(broker, tmp_path, ["fmt/time"], count=1, args=["-F", "%I|%U|@Y-@m-@d @H:@M:@S|@N|@@|%p"])
    run("hato-pub", conn_args(broker) + ["-t", "fmt/time", "-m", "t"], tmp_path, check=0)
    rc, out, _ = s.finish()
    assert rc == 0
    assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}\|\d+\.\d{9}\|"
                        rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\|\d{9}\|@\|t\n", out), out


@pytest.mark.parametrize("fmt,word", [("%z", b"invalid format specifier 'z'"),
                                      ("% ", b"invalid format specifier ' '"),
                                      ("%5", b"incomplete"), ("a%", b"incomplete"),
                                      ("\\q", b"invalid escape specifier 'q'"),
                                      ("x\\", b"incomplete escape"), ("%--t", b"'-'")])
def test_bad_format_rejected_like_mosquitto_sub(tmp_path, fmt, word):
    """mosquitto_sub refuses these at start-up with status 1; so does hato-sub."""
    r = run("hato-sub", ["-t", "x", "-F", fmt], tmp_path, check=1)
    assert word in r.stderr and r.stderr.count(b"\n") == 1, r.stderr
    m = run(MOSQ_SUB, ["-t", "x", "-F", fmt, "-p", "1"], tmp_path)
    assert m.returncode == 1 and b"specifier" in m.stderr
