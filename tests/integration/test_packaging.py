"""Packaging: the systemd units pass `systemd-analyze verify`, and `make
install` (cmake --install with DESTDIR) puts every program, man page, the
config and the units where docs/operations.md says, with a config the
installed broker accepts. The Debian package itself is checked by
scripts/check-deb.sh (it needs root and dpkg -i; CI runs it).
"""

import os
import re
import shutil
import subprocess

import pytest

from conftest import HATO_BIN as _HATO_BIN

HATO_BIN = os.path.abspath(_HATO_BIN)
BUILD = os.path.dirname(HATO_BIN)
ANALYZE = shutil.which("systemd-analyze")
PROGRAMS_BIN = ["hato-pub", "hato-sub", "hato-rr", "hato-passwd", "hato-bench"]
PROGRAMS_SBIN = ["hato", "hato-store"]
MAN = {"hato": 8, "hato-store": 8, "hato-pub": 1, "hato-sub": 1, "hato-rr": 1,
       "hato-passwd": 1, "hato-bench": 1}

needs_build_dir = pytest.mark.skipif(not os.path.exists(os.path.join(BUILD, "CMakeCache.txt")),
                                     reason="HATO_BIN is not in a CMake build directory")


def configured_unit(kind):
    path = os.path.join(BUILD, "packaging", "hato.service" if kind == "system"
                        else "user/hato.service")
    with open(path) as f:
        return f.read()


def runnable(text):
    """The unit with its programs pointing at the binary under test (the installed path
    does not exist here; verify checks that ExecStart names an executable)."""
    return re.sub(r"^(ExecStart(?:Pre)?=)\S*/hato ", lambda m: m.group(1) + HATO_BIN + " ",
                  text, flags=re.M)


def verify(tmp_path, kind):
    unit_dir = tmp_path / kind
    unit_dir.mkdir()
    unit = unit_dir / "hato.service"
    unit.write_text(runnable(configured_unit(kind)))
    cmd = [ANALYZE] + (["--user"] if kind == "user" else []) + ["verify", "--man=no", str(unit)]
    env = dict(os.environ)
    if kind == "user":  # a user manager needs a runtime directory of its own
        run = tmp_path / "run"
        run.mkdir(mode=0o700)
        env["XDG_RUNTIME_DIR"] = str(run)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    return r.returncode, (r.stdout + r.stderr).strip()


def directives(text):
    d = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z]+)=(.*)$", line)
        if m:
            d.setdefault(m.group(1), []).append(m.group(2))
    return d


@needs_build_dir
@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("kind", ["system", "user"])
def test_unit_passes_systemd_analyze_verify(tmp_path, kind):
    rc, out = verify(tmp_path, kind)
    assert rc == 0 and out == "", f"systemd-analyze verify ({kind} unit):\n{out}"


@needs_build_dir
@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not installed")
def test_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a unit with a bad Type= is reported."""
    unit = tmp_path / "hato.service"
    unit.write_text(runnable(configured_unit("system")).replace("Type=notify", "Type=bogus")
                    .replace("Type=simple", "Type=bogus"))
    r = subprocess.run([ANALYZE, "verify", "--man=no", str(unit)], capture_output=True,
                       text=True, timeout=60)
    assert "bogus" in r.stdout + r.stderr


@needs_build_dir
@pytest.mark.parametrize("kind", ["system", "user"])
def test_unit_directives(kind):
    d = directives(configured_unit(kind))
    want_type = "notify" if built_with("systemd") else "simple"
    assert d["Type"] == [want_type]
    assert re.search(r"/hato --test-config -c \S+hato\.conf$", d["ExecStartPre"][0])
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert d["Restart"] == ["on-failure"]
    for k in ("RuntimeDirectory", "LogsDirectory", "StateDirectory"):
        assert d[k] == ["hato"]
    if kind == "system":
        assert d["User"] == ["hato"] and d["WantedBy"] == ["multi-user.target"]
    else:
        # A user service runs as its user: no User=, the config in ~/.config/hato.
        assert "User" not in d and "Group" not in d
        assert d["ExecStart"][0].endswith(" -c %E/hato/hato.conf")
        assert d["WantedBy"] == ["default.target"]


def built_with(part):
    out = subprocess.run([HATO_BIN, "-h"], capture_output=True, text=True, timeout=30).stdout
    return part in out.split("Built with:")[1].split(".")[0].split()


def check_config(hato, conf, cwd=None, installed=False):
    """The shipped config asks for persistence: a build without it refuses the line (the
    config it installs has the lines commented out)."""
    r = subprocess.run([hato, "--test-config", "-c", conf], capture_output=True, text=True,
                       timeout=30, cwd=cwd)
    if built_with("persistence") or installed:
        assert r.returncode == 0 and "Configuration file is OK." in r.stdout, r.stdout + r.stderr
    else:
        assert r.returncode == 1
        assert re.search(r"hato\.conf:\d+: persistence: hato was built without persistence "
                         r"\(WITH_PERSISTENCE=OFF\)", r.stderr), r.stderr


def cache_value(name):
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split("=", 1)[1].strip()
    return None


def install(destdir):
    r = subprocess.run(["cmake", "--install", BUILD], capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, DESTDIR=str(destdir)))
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


@needs_build_dir
def test_make_install_tree(tmp_path):
    root = tmp_path / "root"
    install(root)
    prefix = cache_value("CMAKE_INSTALL_PREFIX")
    top = str(root) + prefix
    sysconf = "/etc" if prefix == "/usr" else prefix + "/etc"
    built = set(os.listdir(BUILD))
    for p in PROGRAMS_SBIN + PROGRAMS_BIN:
        if p not in built:  # hato-store only with WITH_PERSISTENCE
            continue
        where = "sbin" if p in PROGRAMS_SBIN else "bin"
        exe = os.path.join(top, where, p)
        assert os.access(exe, os.X_OK), f"{p} not installed in {where}"
        man = os.path.join(top, "share/man", f"man{MAN[p]}", f"{p}.{MAN[p]}")
        assert os.path.isfile(man), f"{p} has no man page"
    assert os.path.isfile(os.path.join(top, "share/man/man5/hato.conf.5"))
    conf = str(root) + sysconf + "/hato/hato.conf"
    assert os.path.isfile(conf)
    assert os.path.isfile(os.path.join(top, "lib/systemd/system/hato.service"))
    assert os.path.isfile(os.path.join(top, "lib/systemd/user/hato.service"))
    # The installed broker accepts the installed config.
    check_config(os.path.join(top, "sbin/hato"), conf, installed=True)


@needs_build_dir
def test_make_install_keeps_an_edited_config(tmp_path):
    root = tmp_path / "root"
    install(root)
    prefix = cache_value("CMAKE_INSTALL_PREFIX")
    confdir = str(root) + ("/etc" if prefix == "/usr" else prefix + "/etc") + "/hato"
    with open(confdir + "/hato.conf", "a") as f:
        f.write("\n# edited by the administrator\nmax_keepalive 600\n")
    out = install(root)
    assert "Keeping:" in out
    with open(confdir + "/hato.conf") as f:
        assert "edited by the administrator" in f.read()
    with open(confdir + "/hato.conf.new") as f, \
            open(os.path.join(BUILD, "packaging/hato.conf")) as g:
        assert f.read() == g.read()


def test_packaged_config_is_commented_and_accepted(tmp_path):
    """Every section of the shipped config explains itself, and hato accepts it as shipped."""
    path = os.path.join(os.path.dirname(__file__), "../../packaging/hato.conf")
    with open(path) as f:
        text = f.read()
    active = [l for l in text.splitlines() if l.strip() and not l.startswith("#")]
    comments = [l for l in text.splitlines() if l.startswith("#")]
    assert "user hato" in active
    assert len(comments) > 4 * len(active)
    check_config(HATO_BIN, path, cwd=str(tmp_path))
