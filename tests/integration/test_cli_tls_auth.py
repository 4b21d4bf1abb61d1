"""hato-pub / hato-sub against hato's own TLS listener and password file
(the same scenarios tests/interop/test_cli_vs_mosquitto.py runs against
Mosquitto): --cafile with -u/-P or HATO_PASSWORD, and the errors a user sees
for a wrong password and an unknown CA."""

from authutil import hato_passwd
from cliutil import run
from tlspki import pki  # noqa: F401 (a fixture)


def secure_broker(broker_factory, tmp_path, pki):
    pw = tmp_path / "passwd"
    hato_passwd("-c", "-b", pw, "alice", "alice-pw")
    return broker_factory(f"cafile {pki['ca.crt']}\ncertfile {pki['server.crt']}\n"
                          f"keyfile {pki['server.key']}\ntls_version tlsv1.2\n"
                          f"allow_anonymous false\npassword_file {pw}\n", anonymous=False)


def test_pub_sub_over_tls_with_password(broker_factory, tmp_path, pki):
    b = secure_broker(broker_factory, tmp_path, pki)
    tls = ["-h", "127.0.0.1", "-p", b.port, "--cafile", pki["ca.crt"], "--tls-version",
           "tlsv1.2"]
    run("hato-pub", tls + ["-u", "alice", "-P", "alice-pw", "-t", "secure/t", "-m", "s3cret-msg",
                           "-q", "1", "-r"], tmp_path, check=0)
    # The password from the environment instead of the command line.
    r = run("hato-sub", tls + ["-u", "alice", "-t", "secure/t", "-C", "1", "-W", "10", "-v"],
            tmp_path, env={"HATO_PASSWORD": "alice-pw"}, check=0)
    assert r.stdout == b"secure/t s3cret-msg\n"
    b.wait_log(r"New client connected from 127\.0\.0\.1:\d+ as \S+ .*u'alice'")


def test_wrong_password_and_unknown_ca_are_clear_errors(broker_factory, tmp_path, pki):
    b = secure_broker(broker_factory, tmp_path, pki)
    base = ["-h", "127.0.0.1", "-p", b.port, "--tls-version", "tlsv1.2", "-t", "secure/t",
            "-m", "x"]
    r = run("hato-pub", base + ["--cafile", pki["ca.crt"], "-u", "alice", "-P", "wrong"],
            tmp_path)
    assert r.returncode == 5, r.stderr
    assert b"not authori" in r.stderr.lower()
    r = run("hato-pub", base + ["--cafile", pki["other-ca.crt"], "-u", "alice", "-P", "alice-pw"],
            tmp_path)
    assert r.returncode == 3, r.stderr
    assert b"certificate verify failed" in r.stderr
    b.wait_log(r"TLS handshake failed with client 127\.0\.0\.1:\d+")
