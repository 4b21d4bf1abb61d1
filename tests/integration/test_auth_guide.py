"""End to end: the operations guide's set-up with hato's names, without TLS and
with it: a password file made with `hato-passwd -c` then without -c,
`allow_anonymous false`, `password_file`, and mosquitto_sub / mosquitto_pub with
-u/-P. Unauthenticated clients are refused and the refusal is in the log."""

from authutil import hato_passwd, mqtt_pub, mqtt_sub_once, wait_suback
from tlspki import pki  # noqa: F401 (a fixture)


def test_operations_guide_setup_without_tls(broker_factory, tmp_path):
    pw = tmp_path / "passwd"
    # Step 1: create the file with the first user (prompted twice, no echo).
    hato_passwd("-c", pw, "user1", stdin="pass-one\npass-one\n")
    # Step 2: add a second user to the existing file: no -c.
    hato_passwd(pw, "user2", stdin="pass-two\npass-two\n")
    assert [l.split(":")[0] for l in pw.read_text().splitlines()] == ["user1", "user2"]
    # Step 3: the broker configuration of the guide.
    b = broker_factory(f"allow_anonymous false\npassword_file {pw}\n", anonymous=False)
    # Step 4: subscribe and publish with user names and passwords.
    sub = mqtt_sub_once(b.port, "test", user="user1", password="pass-one", extra=["-d"])
    try:
        wait_suback(sub)
        r = mqtt_pub(b.port, "test", "hello", user="user2", password="pass-two")
        assert r.returncode == 0, r.stderr
        out, err = sub.communicate(timeout=20)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    assert sub.returncode == 0, err
    assert "hello" in out.splitlines()
    # Step 5: without credentials, or with a wrong password, nothing gets in.
    r = mqtt_pub(b.port, "test", "x")
    assert r.returncode != 0 and "not authorised" in r.stderr.lower()
    r = mqtt_pub(b.port, "test", "x", user="user2", password="pass-one")
    assert r.returncode != 0 and "not authorised" in r.stderr.lower()
    # Step 6: the log says who failed from where ("watch the logs").
    b.wait_log(r"refused: not authorised \(user '<anonymous>'\)")
    b.wait_log(r"\[127\.0\.0\.1:\d+\] refused: bad user name or password \(user 'user2'\)")
    assert "pass-one" not in b.log and "pass-two" not in b.log


def test_operations_guide_setup_with_tls(broker_factory, tmp_path, pki):
    """The whole guide: the password file as above, and a TLS listener (the
    guide's port 8883, here an ephemeral port) with the CA, server certificate
    and key made by the guide's openssl commands (tests/tlspki.py) and
    `tls_version tlsv1.2`; clients use -u/-P with --cafile --tls-version."""
    pw = tmp_path / "passwd"
    hato_passwd("-c", pw, "user1", stdin="pass-one\npass-one\n")
    hato_passwd(pw, "user2", stdin="pass-two\npass-two\n")
    b = broker_factory(f"cafile {pki['ca.crt']}\ncertfile {pki['server.crt']}\n"
                       f"keyfile {pki['server.key']}\ntls_version tlsv1.2\n"
                       f"allow_anonymous false\npassword_file {pw}\n", anonymous=False)
    tls = ["--cafile", pki["ca.crt"], "--tls-version", "tlsv1.2"]
    sub = mqtt_sub_once(b.port, "test", user="user1", password="pass-one", extra=["-d"] + tls)
    try:
        wait_suback(sub)
        r = mqtt_pub(b.port, "test", "hello over tls", user="user2", password="pass-two",
                     extra=tls)
        assert r.returncode == 0, r.stderr
        out, err = sub.communicate(timeout=20)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    assert sub.returncode == 0, err
    assert "hello over tls" in out.splitlines()
    # A wrong password over TLS, and a plain-text client on the TLS port, get nothing.
    r = mqtt_pub(b.port, "test", "x", user="user2", password="wrong", extra=tls)
    assert r.returncode != 0 and "not authorised" in r.stderr.lower()
    r = mqtt_pub(b.port, "test", "x", user="user2", password="pass-two")
    assert r.returncode != 0
    b.wait_log(r"refused: bad user name or password \(user 'user2'\)")
    assert "pass-one" not in b.log and "pass-two" not in b.log
