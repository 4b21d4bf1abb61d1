"""hato-passwd: the options of mosquitto_passwd (issue 4)."""

import os
import stat

from authutil import hato_passwd, mosquitto_passwd

HASH = r"\$7\$101\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+"


def users(path):
    return [l.split(":", 1)[0] for l in path.read_text().splitlines() if l and l[0] != "#"]


def test_create_prompts_twice_mode_0600(tmp_path):
    """-c creates the file with mode 0600; the password is asked twice (stdin when it is
    not a terminal) and never printed."""
    pw = tmp_path / "passwd"
    r = hato_passwd("-c", pw, "alice", stdin="Sup3r-secret\nSup3r-secret\n")
    assert "Password:" in r.stderr and "Reenter password:" in r.stderr
    assert "Sup3r-secret" not in r.stdout + r.stderr
    assert stat.S_IMODE(os.stat(pw).st_mode) == 0o600
    assert users(pw) == ["alice"]
    assert "Sup3r-secret" not in pw.read_text()


def test_prompt_mismatch_changes_nothing(tmp_path):
    pw = tmp_path / "passwd"
    r = hato_passwd("-c", pw, "alice", stdin="one\ntwo\n", check=False)
    assert r.returncode == 1 and "do not match" in r.stderr
    assert not pw.exists()


def test_without_c_refuses_a_missing_file(tmp_path):
    pw = tmp_path / "passwd"
    r = hato_passwd("-b", pw, "alice", "x", check=False)
    assert r.returncode == 1 and "use -c" in r.stderr
    assert not pw.exists()


def test_update_keeps_other_lines_and_c_overwrites(tmp_path):
    pw = tmp_path / "passwd"
    mosquitto_passwd("-c", "-b", pw, "alice", "a")
    with open(pw, "a") as f:
        f.write("# a comment kept as it is\n")
    hato_passwd("-b", pw, "bob", "b")
    before = pw.read_text().splitlines()
    hato_passwd("-b", pw, "alice", "a2")  # update in place
    after = pw.read_text().splitlines()
    assert [l.split(":")[0] for l in after] == [l.split(":")[0] for l in before]
    assert after[0] != before[0] and after[1:] == before[1:]
    assert "# a comment kept as it is" in after
    hato_passwd("-c", "-b", pw, "carol", "c")
    assert users(pw) == ["carol"]


def test_batch_warns(tmp_path):
    pw = tmp_path / "passwd"
    r = hato_passwd("-c", "-b", pw, "alice", "visible-pw")
    assert "Warning" in r.stderr and "command line" in r.stderr
    assert "visible-pw" not in r.stdout + r.stderr


def test_delete(tmp_path):
    pw = tmp_path / "passwd"
    hato_passwd("-c", "-b", pw, "alice", "a")
    hato_passwd("-b", pw, "bob", "b")
    hato_passwd("-D", pw, "alice")
    assert users(pw) == ["bob"]
    r = hato_passwd("-D", pw, "alice", check=False)
    assert r.returncode == 1 and "not found" in r.stderr
    assert users(pw) == ["bob"]


def test_upgrade_plain_text(tmp_path):
    """-U turns user:password lines into hashes; a file that already holds hashes is
    refused untouched (hashing a hash would lock every user out)."""
    pw = tmp_path / "passwd"
    pw.write_text("alice:apw\n# comment\nbob:bpw\n")
    hato_passwd("-U", pw)
    lines = pw.read_text().splitlines()
    assert lines[0].startswith("alice:$7$101$") and lines[2].startswith("bob:$7$101$")
    assert lines[1] == "# comment"
    assert stat.S_IMODE(os.stat(pw).st_mode) == 0o600
    text = pw.read_text()
    r = hato_passwd("-U", pw, check=False)
    assert r.returncode == 1 and "already holds a password hash" in r.stderr
    assert pw.read_text() == text


def test_hash_choice_and_iterations(tmp_path):
    pw = tmp_path / "passwd"
    hato_passwd("-c", "-H", "sha512", "-b", pw, "a", "x")
    hato_passwd("-H", "sha512-pbkdf2", "-I", "5000", "-b", pw, "b", "x")
    hato_passwd("-H", "argon2id", "-I", "3", "-b", pw, "c", "x")
    lines = pw.read_text().splitlines()
    assert lines[0].startswith("a:$6$")
    assert lines[1].startswith("b:$7$5000$")
    assert lines[2].startswith("c:$argon2id$v=19$m=19456,t=3,p=1$")
    for bad in (["-H", "md5"], ["-I", "0"], ["-H", "sha512", "-I", "10"]):
        r = hato_passwd(*bad, "-b", pw, "d", "x", check=False)
        assert r.returncode == 1, bad


def test_bad_user_names_refused(tmp_path):
    pw = tmp_path / "passwd"
    for name in ("a:b", "", "tab\there"):
        r = hato_passwd("-c", "-b", pw, name, "x", check=False)
        assert r.returncode == 1, name
    assert not pw.exists()


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    pw = tmp_path / "passwd"
    hato_passwd("-c", "-b", pw, "alice", "a")
    hato_passwd("-b", pw, "bob", "b")
    hato_passwd("-D", pw, "bob")
    assert sorted(os.listdir(tmp_path)) == ["passwd"]


def test_usage(tmp_path):
    r = hato_passwd(check=False)
    assert r.returncode == 1 and "Usage" in r.stderr


def test_update_keeps_owner_and_follows_symlink(tmp_path):
    """Updating an existing file keeps its owner and group (root editing the broker's
    file must not lock the broker out of it); a symbolic link still points at the
    file, which is the one rewritten."""
    real = tmp_path / "real-passwd"
    hato_passwd("-c", "-b", real, "alice", "a")
    link = tmp_path / "passwd"
    link.symlink_to(real)
    if os.geteuid() == 0:
        os.chown(real, 4242, 4343)
    hato_passwd("-b", link, "bob", "b")
    assert link.is_symlink() and users(real) == ["alice", "bob"]
    st = os.stat(real)
    assert stat.S_IMODE(st.st_mode) == 0o600
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (4242, 4343)
