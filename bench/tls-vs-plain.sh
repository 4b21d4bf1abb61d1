#!/bin/sh
# TLS against plain TCP on one hato: a 64 MiB message published and read back
# (retained), 100k small messages from one mosquitto_pub -l to one
# mosquitto_sub, and full TLS handshakes per second (openssl s_time).
# Usage: bench/tls-vs-plain.sh [path/to/hato]   (default build/hato)
# Prints seconds per run; the clients are mosquitto's, so the small-message
# figure is bounded by them as much as by the broker.
set -eu
HATO=${1:-build/hato}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
cd "$dir"
pass=pass:bench
openssl req -new -x509 -days 2 -extensions v3_ca -keyout ca.key -out ca.crt -subj /CN=bench-ca -passout $pass 2>/dev/null
openssl genrsa -out server.key 2048 2>/dev/null
openssl req -new -key server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
echo "subjectAltName=IP:127.0.0.1" > san.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -passin $pass -extfile san.ext 2>/dev/null
ports=$(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')
plain=${ports% *}
tls=${ports#* }
cat > b.conf <<CONF
listener $plain 127.0.0.1
listener $tls 127.0.0.1
cafile $dir/ca.crt
certfile $dir/server.crt
keyfile $dir/server.key
allow_anonymous true
max_queued_messages 0
CONF
"$OLDPWD/$HATO" -c b.conf >hato.log 2>&1 &
pid=$!
i=0
until grep -q running hato.log; do i=$((i + 1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done
head -c $((64 * 1024 * 1024)) /dev/urandom >big.bin
seq 1 100000 >lines.txt
now() { date +%s.%N; }
for mode in plain tls; do
    if [ $mode = plain ]; then set -- -h 127.0.0.1 -p "$plain"; else set -- --cafile ca.crt -h 127.0.0.1 -p "$tls"; fi
    s=$(now)
    mosquitto_pub "$@" -t big -f big.bin -r -q 1
    mosquitto_sub "$@" -t big -C 1 -N >got.bin
    e=$(now)
    cmp -s big.bin got.bin || { echo "$mode: 64 MiB payload differs"; exit 1; }
    echo "$mode: 64 MiB publish + read back: $(awk "BEGIN{printf \"%.2f\", $e - $s}") s"
    mosquitto_pub "$@" -t big -n -r
    mosquitto_sub "$@" -t small -C 100000 -i "bench-$mode" >small.out &
    sub=$!
    i=0
    until grep -q "as bench-$mode" hato.log; do i=$((i + 1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done
    s=$(now)
    mosquitto_pub "$@" -t small -l <lines.txt
    wait $sub
    e=$(now)
    echo "$mode: 100000 small messages: $(awk "BEGIN{printf \"%.2f\", $e - $s}") s"
done
openssl s_time -connect 127.0.0.1:"$tls" -new -time 4 -CAfile ca.crt 2>/dev/null | grep "connections in .* real"
