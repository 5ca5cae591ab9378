#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# contrib/bench/dkim/run.sh: the DKIM plugin's figures.
#
#  1. engine: signatures/s and verifications/s, RSA-2048 and Ed25519, 4 KiB
#     messages, 2 threads sharing one signer/verifier (BUILD/plugins/dkim/dkim_bench);
#  2. proxy: sluice-bench -> sluice -> smtp-sink, 32 sessions x 4 KiB, with
#       - the empty chain,
#       - verify + sign (the production order: inbound verify, outbound sign;
#         sluice-bench's mail is unsigned, so verify says dkim=none),
#       - sign + verify (every message signed with RSA-2048 and Ed25519, then
#         both signatures verified: the most crypto per message).
#     Key records come from a keys_file, so no DNS is involved.
#
# Loopback only; everything started is stopped on exit.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
build="$repo/build"
messages=4000
sessions=32
seconds=3

while [ $# -gt 0 ]; do
    case "$1" in
    --build) build=$2; shift 2 ;;
    --messages) messages=$2; shift 2 ;;
    --sessions) sessions=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    -h|--help)
        echo "usage: $0 [--build DIR] [--messages N] [--sessions N] [--seconds S]"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done

die() { echo "dkim bench: $*" >&2; exit 1; }
[ -d "$build" ] || die "no build directory $build (--build DIR)"
make -C "$build" -j2 sluice plugin_dkim dkim_bench sluice-bench >/dev/null || die "build failed"
sluice=$build/proxy/sluice
bench=$build/contrib/bench/sluice-bench
engine=$build/plugins/dkim/dkim_bench
sink=/usr/sbin/smtp-sink
[ -x "$sink" ] || die "needs Postfix's smtp-sink"

work=$(mktemp -d /tmp/sluice-dkim-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() {
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

echo "== engine ($(nproc) cores): $engine --threads 2 --seconds $seconds --size 4096"
"$engine" --threads 2 --seconds "$seconds" --size 4096 || die "engine benchmark failed"

# keys for the proxy runs, made now
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/rsa.pem" 2>/dev/null
openssl genpkey -algorithm ed25519 -out "$work/ed.pem" 2>/dev/null
chmod 600 "$work"/*.pem
printf 'example.com rsa rsa.pem rsa-sha256\nexample.com ed ed.pem ed25519-sha256\n' >"$work/table"
{
    echo "rsa._domainkey.example.com v=DKIM1; k=rsa; p=$(openssl pkey -in "$work/rsa.pem" -pubout -outform DER | base64 -w0)"
    echo "ed._domainkey.example.com v=DKIM1; k=ed25519; p=$(openssl pkey -in "$work/ed.pem" -pubout -outform DER | tail -c 32 | base64 -w0)"
} >"$work/keys"

sink_port=$(free_port)
"$sink" -c -u nobody 127.0.0.1:"$sink_port" 4096 >/dev/null 2>"$work/sink.err" &
pids+=($!)
wait_port "$sink_port" || die "smtp-sink did not start"

conf() { # conf NAME CHAIN -> config file path
    local f="$work/$1.conf"
    cat >"$f" <<CONF
[server]
max_connections = 4096
max_connections_per_ip = 4096
[chain]
plugins = $2
[plugin dkimv]
path = dkim
mode = verify
authserv_id = bench.test
keys_file = $work/keys
[plugin dkims]
path = dkim
mode = sign
signing_table = $work/table
CONF
    echo "$f"
}

run() { # run LABEL CHAIN
    local port cfg out
    port=$(free_port)
    cfg=$(conf "$1" "$2")
    "$sluice" -c "$cfg" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$sink_port" \
        --stats-listen no >"$work/$1.log" 2>&1 &
    local pid=$!
    pids+=($pid)
    wait_port "$port" || die "sluice ($1) did not start: $(tail -3 "$work/$1.log")"
    out=$("$bench" --server "127.0.0.1:$port" --sessions "$sessions" --messages "$messages" \
        --size 4096 --pipelining --from bench@example.com --quiet) || die "sluice-bench ($1) failed: $out"
    kill "$pid"
    wait "$pid" 2>/dev/null
    local rate
    rate=$(sed -n 's/.* msgs_per_s=\([0-9.]*\).*/\1/p' <<<"$out")
    [ -n "$rate" ] || rate=$(grep -o 'rate=[0-9.]*' <<<"$out" | cut -d= -f2)
    printf '%-34s %10s msg/s   (%s)\n' "$1 [$2]" "${rate:-?}" "$out"
}

echo "== proxy: sluice-bench -> sluice -> smtp-sink, $sessions sessions x 4 KiB, $messages messages"
run empty ""
run verify+sign "dkimv, dkims"
run sign+verify "dkims, dkimv"
