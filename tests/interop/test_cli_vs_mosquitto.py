"""hato-pub, hato-sub and hato-rr against Debian's mosquitto broker: the
clients must work with any compliant broker, not only hato.

Each test starts /usr/sbin/mosquitto on an ephemeral loopback port with a
generated configuration: plain, with a password file made by
mosquitto_passwd, with TLS (certificates made at test time with the openssl
command), with TLS client certificates, and with TLS-PSK. Readiness is
mosquitto's own "running" log line.
"""

import os
import shutil
import subprocess

import pytest

from conftest import LoggedProcess, free_port
from cliutil import Sub, run

MOSQUITTO = "/usr/sbin/mosquitto"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(MOSQUITTO) and shutil.which("mosquitto_passwd") and shutil.which("openssl")),
    reason="needs Debian's mosquitto (mosquitto_passwd) and the openssl command")


class Mosquitto(LoggedProcess):
    def __init__(self, tmp_path, config):
        self.host = "127.0.0.1"
        self.port = free_port()
        path = tmp_path / f"mosquitto-{self.port}.conf"
        path.write_text(f"listener {self.port} 127.0.0.1\n"
                        "log_dest stderr\nlog_type all\n"
                        "user root\n"  # keep access to the test's 0700 directories
                        + config)
        super().__init__([MOSQUITTO, "-c", str(path)])
        self.wait_log(r"mosquitto version \S+ running", timeout=15)


@pytest.fixture
def mosquitto_factory(tmp_path):
    started = []

    def start(config="allow_anonymous true\n"):
        m = Mosquitto(tmp_path, config)
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for localhost/127.0.0.1, one for another
    name, a client certificate, and an unrelated CA."""
    d = tmp_path_factory.mktemp("pki")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "otherca"):
        openssl("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
                "-subj", f"/CN=hato test {ca}", "-days", "2", cwd=d)
    for name, san in (("server", "DNS:localhost,IP:127.0.0.1"), ("wrongname", "DNS:elsewhere"),
                      ("client", None)):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)
        ext = []
        if san:
            (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
            ext = ["-extfile", f"{name}.ext"]
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *ext, cwd=d)
    return d


def tls_conf(pki, cert="server", extra=""):
    return (f"cafile {pki}/ca.crt\ncertfile {pki}/{cert}.crt\nkeyfile {pki}/{cert}.key\n"
            f"allow_anonymous true\n{extra}")


def base(m, *more):
    return ["-h", m.host, "-p", str(m.port)] + list(more)


def roundtrip(m, tmp_path, pub_args=(), sub_args=(), qos=1, version="311", topic="x/rt"):
    s = Sub(m, tmp_path, [topic], count=1, program="hato-sub", sync=False,
            args=["-q", qos, "-V", version, "-d"] + list(sub_args))
    s.wait_for(b"Subscribed (mid: 1)")
    run("hato-pub", base(m, "-q", qos, "-V", version, "-t", topic, "-m", "over the wire")
        + list(pub_args), tmp_path, check=0)
    rc, out, err = s.finish()
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[-2] == b"over the wire" and lines[-1].endswith(b" sending DISCONNECT"), out
    return out


# ---- plain ------------------------------------------------------------------

@pytest.mark.parametrize("version", ["31", "311", "5"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_pub_sub_each_qos(mosquitto_factory, tmp_path, version, qos):
    m = mosquitto_factory()
    roundtrip(m, tmp_path, qos=qos, version=version)


def test_retained_and_null_clear(mosquitto_factory, tmp_path):
    m = mosquitto_factory()
    run("hato-pub", base(m, "-r", "-q", "1", "-t", "ret/t", "-m", "kept"), tmp_path, check=0)
    r = run("hato-sub", base(m, "-t", "ret/t", "-C", "1", "-W", "5", "-F", "%r %p"), tmp_path,
            check=0)
    assert r.stdout == b"1 kept\n"
    run("hato-pub", base(m, "-r", "-n", "-t", "ret/t"), tmp_path, check=0)
    r = run("hato-sub", base(m, "-t", "ret/t", "-W", "1"), tmp_path)
    assert r.returncode == 27 and r.stdout == b""


def test_v5_properties_and_rr(mosquitto_factory, tmp_path):
    m = mosquitto_factory()
    s = Sub(m, tmp_path, ["rr/req"], count=1, sync=False,
            args=["-V", "5", "-d", "-F", "%R|%p"])
    s.wait_for(b"Subscribed (mid: 1)")
    rr = subprocess.Popen([os.path.join(os.path.dirname(s.proc.args[0]), "hato-rr")]
                          + base(m, "-t", "rr/req", "-e", "rr/resp", "-m", "ping", "-W", "10"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=dict(os.environ, HOME=str(tmp_path)))
    rc, out, _ = s.finish()
    assert b"rr/resp|ping" in out
    # Answer as a responder would (mosquitto_pub, MQTT 5, same correlation data).
    run("hato-pub", base(m, "-V", "5", "-t", "rr/resp", "-m", "pong"), tmp_path, check=0)
    o, e = rr.communicate(timeout=15)
    assert rr.returncode == 0 and o == b"pong\n", e


# ---- authentication -----------------------------------------------------------

@pytest.fixture
def auth_broker(mosquitto_factory, tmp_path):
    pw = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "alice", "wonderland"], check=True,
                   timeout=30, capture_output=True)
    os.chmod(pw, 0o600)
    return mosquitto_factory(f"allow_anonymous false\npassword_file {pw}\n")


def test_user_password_accepted(auth_broker, tmp_path):
    roundtrip(auth_broker, tmp_path, pub_args=["-u", "alice", "-P", "wonderland"],
              sub_args=["-u", "alice", "-P", "wonderland"])


def test_wrong_password_exit_5_in_words(auth_broker, tmp_path):
    r = run("hato-pub", base(auth_broker, "-u", "alice", "-P", "nope", "-t", "t", "-m", "x"),
            tmp_path, check=5)
    assert r.stderr == b"Error: connection refused by the broker: Connection Refused: not authorised.\n"
    r = run("hato-pub", base(auth_broker, "-V", "5", "-u", "alice", "-P", "nope", "-t", "t",
                             "-m", "x"), tmp_path, check=5)
    assert b"Not authorized" in r.stderr or b"Bad user name or password" in r.stderr


def test_anonymous_refused_exit_5(auth_broker, tmp_path):
    run("hato-pub", base(auth_broker, "-t", "t", "-m", "x"), tmp_path, check=5)


def test_password_from_environment_and_options_file(auth_broker, tmp_path):
    run("hato-pub", base(auth_broker, "-u", "alice", "-t", "t", "-m", "x"), tmp_path, check=0,
        env={"HATO_PASSWORD": "wonderland"})
    opts = tmp_path / ".config" / "hato"
    opts.mkdir(parents=True)
    (opts / "pub").write_text("-u alice\n-P wonderland\n")
    os.chmod(opts / "pub", 0o600)
    r = run("hato-pub", base(auth_broker, "-t", "t", "-m", "x"), tmp_path, check=0)
    assert r.stderr == b""


# ---- TLS --------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_tls_cafile(mosquitto_factory, tmp_path, pki, host):
    m = mosquitto_factory(tls_conf(pki))
    m.host = host
    roundtrip(m, tmp_path, pub_args=["--cafile", pki / "ca.crt"],
              sub_args=["--cafile", pki / "ca.crt"])


def test_tls_capath_and_version(mosquitto_factory, tmp_path, pki):
    cadir = tmp_path / "cadir"
    cadir.mkdir()
    shutil.copy(pki / "ca.crt", cadir / "ca.pem")
    subprocess.run(["openssl", "rehash", str(cadir)], check=True, timeout=30, capture_output=True)
    m = mosquitto_factory(tls_conf(pki))
    run("hato-pub", base(m, "--capath", cadir, "--tls-version", "tlsv1.3", "-t", "t", "-m", "x"),
        tmp_path, check=0)
    run("hato-pub", base(m, "--cafile", pki / "ca.crt", "--tls-version", "tlsv1.2", "-t", "t",
                         "-m", "x"), tmp_path, check=0)


def test_tls_unknown_ca_exit_3_with_openssl_reason(mosquitto_factory, tmp_path, pki):
    m = mosquitto_factory(tls_conf(pki))
    r = run("hato-pub", base(m, "--cafile", pki / "otherca.crt", "-t", "t", "-m", "x"), tmp_path,
            check=3)
    assert r.stderr.startswith(b"Error: TLS: certificate verify failed: ") and \
        r.stderr.count(b"\n") == 1, r.stderr


def test_tls_host_name_mismatch_and_insecure(mosquitto_factory, tmp_path, pki):
    m = mosquitto_factory(tls_conf(pki, cert="wrongname"))
    r = run("hato-pub", base(m, "--cafile", pki / "ca.crt", "-t", "t", "-m", "x"), tmp_path,
            check=3)
    assert b"certificate verify failed" in r.stderr
    run("hato-pub", base(m, "--cafile", pki / "ca.crt", "--insecure", "-t", "t", "-m", "x"),
        tmp_path, check=0)


def test_tls_client_certificate(mosquitto_factory, tmp_path, pki):
    m = mosquitto_factory(tls_conf(pki, extra="require_certificate true\n"))
    ca = ["--cafile", pki / "ca.crt"]
    roundtrip(m, tmp_path, pub_args=ca + ["--cert", pki / "client.crt", "--key", pki / "client.key"],
              sub_args=ca + ["--cert", pki / "client.crt", "--key", pki / "client.key"])
    r = run("hato-pub", base(m, *ca, "-t", "t", "-m", "x"), tmp_path)
    assert r.returncode in (3, 6) and r.stderr.count(b"\n") == 1, r.stderr


def test_tls_url_mqtts(mosquitto_factory, tmp_path, pki):
    m = mosquitto_factory(tls_conf(pki))
    run("hato-pub", ["-L", f"mqtts://localhost:{m.port}/url/t", "--cafile", pki / "ca.crt",
                     "-m", "x"], tmp_path, check=0)


def test_tls_psk(mosquitto_factory, tmp_path):
    psk = tmp_path / "psk"
    psk.write_text("hato-id:00112233445566778899aabbccddeeff\n")
    m = mosquitto_factory(f"psk_hint hato\npsk_file {psk}\nallow_anonymous true\n"
                          "use_identity_as_username false\n")
    roundtrip(m, tmp_path, pub_args=["--psk", "00112233445566778899aabbccddeeff",
                                     "--psk-identity", "hato-id", "--tls-version", "tlsv1.2"],
              sub_args=["--psk", "00112233445566778899aabbccddeeff", "--psk-identity", "hato-id",
                        "--tls-version", "tlsv1.2"])
    r = run("hato-pub", base(m, "--psk", "ffff", "--psk-identity", "hato-id", "--tls-version",
                             "tlsv1.2", "-t", "t", "-m", "x"), tmp_path)
    assert r.returncode in (3, 6) and r.stderr.count(b"\n") == 1, r.stderr
