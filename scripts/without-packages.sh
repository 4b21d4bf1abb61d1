#!/bin/sh
# Run a command on this machine as if some Debian packages were not
# installed: in a private mount namespace, /usr is covered by an overlay in
# which every file of those packages is deleted. The machine itself is not
# changed (the overlay lives in a tmpfs and ends with the command). Root
# only (unshare, mount).
#
#   scripts/without-packages.sh "libcmocka-dev libcmocka0" make build BUILD=build-x
#
# CI uses it to prove that `make run`'s build needs nothing of the test
# packages (issue 13): with no container runtime or network bootstrap in
# CI, this is the honest fresh machine we can make in a second.
set -eu
[ $# -ge 2 ] || { echo "usage: $0 'PKG...' COMMAND..." >&2; exit 2; }
pkgs=$1
shift
[ "$(id -u)" = 0 ] || { echo "$0: needs root" >&2; exit 1; }
exec unshare --mount --propagation private /bin/sh -eu -c '
    pkgs=$1; shift
    top=$(mktemp -d)
    mount -t tmpfs hide "$top"
    mkdir "$top/upper" "$top/work"
    mount -t overlay hide-usr -o "lowerdir=/usr,upperdir=$top/upper,workdir=$top/work" /usr
    n=0
    for p in $pkgs; do
        dpkg-query -W "$p" >/dev/null 2>&1 || continue
        for f in $(dpkg -L "$p"); do
            case "$f" in /usr/*) ;; *) continue ;; esac
            if [ -f "$f" ] || [ -L "$f" ]; then
                rm -f "$f" && n=$((n + 1))
            fi
        done
    done
    echo "without-packages: hid $n files of:$(printf " %s" $pkgs)"
    exec "$@"
' sh "$pkgs" "$@"
