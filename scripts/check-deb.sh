#!/bin/sh
# CI check of the Debian package (make deb first), as root on a machine
# where hato is not installed: dpkg -i, the installed files, the installed
# `hato --test-config` on the installed config, the installed broker
# started as the hato user (as its unit does) on an ephemeral loopback port
# and passing a message, then dpkg -r (keeps /etc/hato and /var/lib/hato)
# and dpkg -P (removes them). Leaves the package uninstalled.
set -eu
DEB=${1:-$(ls build-deb/hato_*.deb | head -1)}
fail() { echo "check-deb: $*" >&2; dpkg -P hato >/dev/null 2>&1 || true; exit 1; }
[ "$(id -u)" = 0 ] || { echo "check-deb: needs root (dpkg -i)"; exit 1; }
if dpkg-query -W -f='${Status}' hato 2>/dev/null | grep -q "ok installed"; then
    echo "check-deb: hato is installed already; not touching it"; exit 1
fi

dpkg -i "$DEB" >/dev/null
for f in /usr/sbin/hato /usr/sbin/hato-store /usr/bin/hato-pub /usr/bin/hato-sub /usr/bin/hato-rr \
    /usr/bin/hato-passwd /usr/bin/hato-bench /etc/hato/hato.conf /lib/systemd/system/hato.service \
    /usr/lib/systemd/user/hato.service /usr/share/man/man8/hato.8.gz /usr/share/man/man5/hato.conf.5.gz \
    /usr/share/man/man8/hato-store.8.gz /usr/share/man/man1/hato-pub.1.gz \
    /usr/share/man/man1/hato-sub.1.gz /usr/share/man/man1/hato-rr.1.gz \
    /usr/share/man/man1/hato-passwd.1.gz /usr/share/man/man1/hato-bench.1.gz /etc/logrotate.d/hato \
    /usr/share/hato/console/index.html /usr/share/hato/console/app.js; do
    [ -e "$f" ] || fail "missing $f"
done
grep -qx /etc/hato/hato.conf /var/lib/dpkg/info/hato.conffiles || fail "hato.conf is not a conffile"
getent passwd hato >/dev/null || fail "no hato user"
for d in /var/lib/hato /var/log/hato; do
    [ "$(stat -c %U:%G "$d")" = hato:hato ] || fail "$d not owned by hato"
done
[ -L /etc/systemd/system/multi-user.target.wants/hato.service ] || fail "hato.service not enabled"
/usr/sbin/hato --test-config -c /etc/hato/hato.conf >/dev/null || fail "installed config refused"
# The packaged broker loads Mosquitto plugins (built with mosquitto-dev, a
# build dependency) and exports the mosquitto_* functions they call.
/usr/sbin/hato -h 2>&1 | grep -q "Built with:.* plugins" || fail "packaged hato has no plugin support"
nm -D --defined-only /usr/sbin/hato | grep -q " mosquitto_callback_register$" ||
    fail "packaged hato does not export mosquitto_callback_register"
if command -v systemd-analyze >/dev/null; then
    out=$(systemd-analyze verify --man=no /lib/systemd/system/hato.service 2>&1) || fail "unit: $out"
    [ -z "$out" ] || fail "unit: $out"
fi

# The installed broker as its unit runs it (user hato, in /var/lib/hato).
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
log=$(mktemp)
(cd /var/lib/hato && exec setpriv --reuid=hato --regid=hato --init-groups \
    /usr/sbin/hato -c /etc/hato/hato.conf -p "$port") >"$log" 2>&1 &
pid=$!
i=0
until grep -q "running" "$log"; do
    i=$((i + 1))
    [ $i -le 100 ] && kill -0 $pid 2>/dev/null || { cat "$log"; fail "installed broker did not start"; }
    sleep 0.1
done
got=$(/usr/bin/hato-rr -h 127.0.0.1 -p "$port" -t check/deb/req -e check/deb/req -m ping -W 5 2>&1) || true
kill -TERM $pid
wait $pid || { cat "$log"; fail "installed broker exited with $?"; }
[ "$got" = ping ] || { cat "$log"; fail "no message through the installed broker: $got"; }
ls /var/lib/hato/mosquitto.db >/dev/null || fail "no store in /var/lib/hato"
rm -f "$log"

dpkg -r hato >/dev/null
[ ! -e /usr/sbin/hato ] || fail "dpkg -r left /usr/sbin/hato"
[ -f /etc/hato/hato.conf ] || fail "dpkg -r removed /etc/hato/hato.conf"
[ -d /var/lib/hato/mosquitto.db ] || [ -f /var/lib/hato/mosquitto.db ] || fail "dpkg -r removed the store"
dpkg -P hato >/dev/null
for d in /etc/hato /var/lib/hato /var/log/hato; do
    [ ! -e "$d" ] || fail "dpkg -P left $d"
done
echo "check-deb: $DEB installs, starts, is removed and purged as it should"
