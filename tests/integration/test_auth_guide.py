"""End to end: the operations guide's set-up with hato's names, minus TLS (which
has its own tests): a password file made with `hato-passwd -c` then without -c,
`allow_anonymous false`, `password_file`, and mosquitto_sub / mosquitto_pub with
-u/-P. Unauthenticated clients are refused and the refusal is in the log."""

from authutil import hato_passwd, mqtt_pub, mqtt_sub_once, wait_suback


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
