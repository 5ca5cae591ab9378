#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# contrib/bench/spam/run.sh: the spam plugin's figures.
#
#  1. engine alone (BUILD/plugins/spam/spam_bench): about 200 rules (the
#     shipped rules plus generated ones), 4 KiB and 50 KiB messages,
#     2 threads sharing one compiled set: messages/s; then the shipped
#     rules with the Hyperscan prefilter and without (smtp-source bodies
#     of 4 and 64 KiB, the corpus's ham and spam);
#  2. proxy: sluice-bench -> sluice -> smtp-sink, 4 KiB and 50 KiB messages,
#     32 sessions, with the empty chain and with the spam plugin (shipped
#     rules, default thresholds; sluice-bench's mail scores 0, so every
#     message is scanned and relayed).
#
# Loopback only; everything started is stopped on exit.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
build="$repo/build"
messages=6000
sessions=32
seconds=3
extra=110

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

die() { echo "spam bench: $*" >&2; exit 1; }
[ -d "$build" ] || die "no build directory $build (--build DIR)"
make -C "$build" -j2 sluice plugin_spam spam_bench sluice-bench >/dev/null || die "build failed"
sluice=$build/proxy/sluice
bench=$build/contrib/bench/sluice-bench
engine=$build/plugins/spam/spam_bench
rules=$repo/rules/spam.rules
sink=/usr/sbin/smtp-sink
[ -x "$sink" ] || die "needs Postfix's smtp-sink"

work=$(mktemp -d /tmp/sluice-spam-bench.XXXXXX)
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

echo "== engine alone ($(nproc) cores, 2 threads, shipped + $extra generated rules)"
for size in 4096 51200; do
    echo "   $engine --rules $rules --extra $extra --threads 2 --seconds $seconds --size $size"
    "$engine" --rules "$rules" --extra "$extra" --threads 2 --seconds "$seconds" --size "$size" \
        | sed 's/^/   /' || die "engine benchmark failed"
done
# The Hyperscan prefilter against PCRE2 on every rule (shipped rules, one
# thread): smtp-source's -l 4096 / -l 65536 bodies and the corpus's mix of
# ham and spam. Without Hyperscan both lines say prefilter=off.
echo "== engine alone, prefilter on and off (1 thread, shipped rules)"
corpus=$repo/plugins/spam/tests/corpus.txt
for what in "--style smtp-source --size 4096" "--style smtp-source --size 65536" "--corpus $corpus"; do
    for pf in "" "--no-prefilter"; do
        # shellcheck disable=SC2086
        "$engine" --rules "$rules" --threads 1 --seconds "$seconds" $what $pf \
            | sed -n "s|^RESULT .*avg_size=\([0-9]*\).* msgs_per_s=\([0-9]*\).* prefilter=\(.*\)|   ${what##*/} avg \1 B: \2 msg/s, prefilter=\3|p" \
            || die "engine benchmark failed"
    done
done

sink_port=$(free_port)
"$sink" -u nobody 127.0.0.1:"$sink_port" 4096 >/dev/null 2>"$work/sink.err" &
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
[plugin spam]
path = spam
rules = $rules
CONF
    echo "$f"
}

declare -A rate
run() { # run LABEL CHAIN SIZE
    local port cfg out pid n
    port=$(free_port)
    cfg=$(conf "$1" "$2")
    "$sluice" -c "$cfg" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$sink_port" \
        --stats-listen no >"$work/$1.log" 2>&1 &
    pid=$!
    pids+=($pid)
    wait_port "$port" || die "sluice ($1) did not start: $(tail -3 "$work/$1.log")"
    n=$messages
    [ "$3" -gt 8192 ] && n=$((messages / 2))
    out=$("$bench" --server "127.0.0.1:$port" --sessions "$sessions" --messages "$n" \
        --size "$3" --pipelining --quiet) || die "sluice-bench ($1) failed: $out"
    kill "$pid"
    wait "$pid" 2>/dev/null
    rate[$1]=$(sed -n 's/.* msgs_per_s=\([0-9.]*\).*/\1/p' <<<"$out")
    printf '   %-22s %8.0f msg/s   (%s)\n' "$1" "${rate[$1]}" "$out"
}

echo "== proxy: sluice-bench --sessions $sessions --pipelining -> sluice -> smtp-sink"
run "empty-chain-4k" "" 4096
run "spam-4k" "spam" 4096
run "empty-chain-50k" "" 51200
run "spam-50k" "spam" 51200

echo "== summary"
awk -v e="${rate[empty-chain-4k]}" -v s="${rate[spam-4k]}" -v e5="${rate[empty-chain-50k]}" \
    -v s5="${rate[spam-50k]}" 'BEGIN {
    printf "   4 KiB:  spam %.0f msg/s vs empty chain %.0f msg/s (%.0f%%)  target >= 2000: %s\n",
        s, e, 100 * s / e, (s >= 2000 ? "PASS" : "FAIL");
    printf "   50 KiB: spam %.0f msg/s vs empty chain %.0f msg/s (%.0f%%)\n", s5, e5, 100 * s5 / e5;
}'
