"""Helpers for the security tests: password/ACL files, hato-passwd, Mosquitto.

hato-passwd is found next to the broker under test (HATO_BIN's directory)
unless HATO_PASSWD_BIN names it.
"""

import os
import subprocess

from conftest import HATO_BIN, REFERENCE, LoggedProcess, free_port

HATO_PASSWD = os.environ.get("HATO_PASSWD_BIN",
                             os.path.join(os.path.dirname(os.path.abspath(HATO_BIN)), "hato-passwd"))
MOSQUITTO = "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"


def hato_passwd(*args, stdin=None, check=True):
    """Run hato-passwd; returns CompletedProcess (text). stdin feeds the prompts."""
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    r = subprocess.run([HATO_PASSWD, *map(str, args)], input=stdin, capture_output=True, text=True,
                       timeout=60, env=env)
    if check:
        assert r.returncode == 0, f"hato-passwd {args} failed ({r.returncode}):\n{r.stderr}"
    return r


def mosquitto_passwd(*args):
    r = subprocess.run([MOSQUITTO_PASSWD, *map(str, args)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r


def write(path, text):
    path.write_text(text)
    return path


class Mosquitto(LoggedProcess):
    """Debian's mosquitto on an ephemeral loopback port with our config lines."""

    def __init__(self, tmp_path, config):
        self.host = "127.0.0.1"
        self.port = free_port()
        conf = tmp_path / f"mosquitto-{self.port}.conf"
        # As root, Mosquitto would switch to user "mosquitto", which cannot read the
        # 0600 files in the test's private directory: stay as the test's user.
        user = "user root\n" if os.geteuid() == 0 else ""
        conf.write_text(f"listener {self.port} 127.0.0.1\nlog_dest stderr\nlog_type all\n" + user +
                        config)
        super().__init__([MOSQUITTO, "-c", str(conf)])
        self.wait_log(r"mosquitto version \S+ running", timeout=15)

    def stop(self):
        self.terminate()


def mqtt_sub_once(port, topic, user=None, password=None, extra=(), timeout=10):
    """Start mosquitto_sub for one message; returns the Popen (read .stdout).
    Its output is line-buffered (stdbuf) so that -d lines can be awaited."""
    cmd = ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-C", "1",
           "-W", str(timeout)]
    if user is not None:
        cmd += ["-u", user]
    if password is not None:
        cmd += ["-P", password]
    cmd += list(extra)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def mqtt_pub(port, topic, message, user=None, password=None, extra=()):
    cmd = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-m", message]
    if user is not None:
        cmd += ["-u", user]
    if password is not None:
        cmd += ["-P", password]
    cmd += list(extra)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


def wait_suback(proc, limit=50):
    """Read mosquitto_sub -d output until its SUBACK line; returns the lines read."""
    lines = []
    for _ in range(limit):
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "received SUBACK" in line:
            return lines
    raise AssertionError("mosquitto_sub got no SUBACK:\n" + "".join(lines) + proc.stderr.read())


# Config lines for the tests' brokers: hato's login slowdown off (a hato
# extension), or, when the suite runs against Mosquitto for reference as root,
# Mosquitto kept from switching to a user that cannot read the test's files.
if REFERENCE == "hato":
    FAST = "auth_fail_delay 0\n"
else:
    FAST = "user root\n" if os.geteuid() == 0 else ""
