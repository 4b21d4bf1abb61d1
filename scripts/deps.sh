#!/bin/sh
# Install what hato needs from Debian's packages: `build` for the broker,
# `test` for the test suite too, `deb` for the Debian package. As root it runs apt-get; otherwise it
# prints the one command to run.
set -e
want="cmake make gcc pkg-config libssl-dev liblmdb-dev libsystemd-dev libcjson-dev libargon2-dev libwslay-dev mosquitto-dev libnats-dev"
test_only="clang libcmocka-dev python3 python3-pytest python3-pytest-xdist python3-pytest-timeout python3-paho-mqtt mosquitto mosquitto-clients openssl haproxy chromium prometheus systemd nats-server"
# `deps.sh list-test-only`: the packages only the tests need (CI builds
# once with them hidden, scripts/without-packages.sh).
if [ "$1" = "list-test-only" ]; then
    echo "$test_only"
    exit 0
fi
if [ "$1" = "test" ]; then
    want="$want $test_only"
fi
if [ "$1" = "deb" ]; then
    want="$want debhelper build-essential"
fi
missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
node_deps() {
    # The npm `mqtt` package for the interop tests, pinned by package-lock.json.
    if [ "$1" = "test" ] && command -v npm >/dev/null && [ ! -d tests/interop/node/node_modules ]; then
        npm ci --silent --prefix tests/interop/node >/dev/null 2>&1 ||
            echo "warning: npm ci failed; the Node.js interop tests will be skipped"
    fi
    return 0
}
if [ -z "$missing" ]; then
    node_deps "$1"
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    echo "Installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q $missing >/dev/null
else
    echo "Missing packages:$missing"
    echo "Run: sudo apt-get install -y$missing"
    exit 1
fi
node_deps "$1"
