#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# hostile.sh: the hostile-load benchmark. A well-behaved client sends mail,
# one connection per message, through sluice to Postfix's smtp-sink: alone
# (baseline), then while 10,000 idle connections, slowloris clients and a
# command flood hold sluice, then alone again. Prints the good client's
# msgs/s and p50/p99 latency per phase, sluice's CPU and RSS, what the crowd
# saw, and checks that the sink got every message the client saw accepted.
# Loopback only; everything it starts is stopped on exit. See README.md.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=${BUILD:-$repo/build-bench}
idle=10000
slow=200
flood=16
deaf=0
idle_mail=0
junk_limit=100
sink_m=4096
baseline=15
duration=20
size=4096
cmd_timeout=120s
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
    --build) build=$2; shift 2 ;;
    --idle) idle=$2; shift 2 ;;
    --slowloris) slow=$2; shift 2 ;;
    --flood) flood=$2; shift 2 ;;
    --deaf) deaf=$2; shift 2 ;;
    --idle-mail) idle_mail=$2; shift 2 ;;
    --junk-limit) junk_limit=$2; shift 2 ;;
    --sink-concurrency) sink_m=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --command-timeout) cmd_timeout=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    *) echo "usage: $0 [--build DIR] [--idle N] [--slowloris N] [--flood N] [--deaf N] [--idle-mail N]" \
            "[--junk-limit N] [--sink-concurrency N] [--baseline S]" \
            "[--duration S] [--size B] [--command-timeout T] [-- sluice-hostile options]" >&2
       exit 2 ;;
    esac
done
sluice=$build/proxy/sluice
tool=$build/contrib/bench/sluice-hostile
sink_bin=/usr/sbin/smtp-sink
die() { echo "hostile.sh: $*" >&2; exit 1; }
[ -x "$sink_bin" ] || die "needs Postfix's smtp-sink"
if [ ! -x "$tool" ] || [ ! -x "$sluice" ]; then
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_TESTS=OFF >/dev/null || die "cmake"
    cmake --build "$build" -j2 --target sluice sluice-hostile >/dev/null || die "build failed"
fi

work=$(mktemp -d /tmp/sluice-hostile.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 10,000 connections need descriptors in sluice and in the tool.
crowd=$((idle + slow + flood + deaf + idle_mail))
need=$((crowd + 500))
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge "$need" ] || die "ulimit -n $(ulimit -n) < $need"

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { local i; for ((i = 0; i < 100; i++)); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }

sink_port=$(free_port)
# -m: smtp-sink's own session limit (its default is 256); every client
# inside a transaction holds one upstream session through sluice.
"$sink_bin" -c -u nobody -m "$sink_m" "127.0.0.1:$sink_port" 1024 >"$work/sink.out" 2>"$work/sink.err" &
sink_pid=$!
pids+=("$sink_pid")
wait_port "$sink_port" || die "smtp-sink did not start: $(cat "$work/sink.err")"

# The limits under test. Capacity is the question, so the crowd comes from
# 250 loopback addresses (about 41 connections each) under the DEFAULT
# per-IP limit of 50; max_connections is raised above the crowd; junk and
# error limits stay at their defaults (the flood gets cut off and comes
# back); command_timeout is longer than the run so that idle connections
# stay (the slowloris column shows whether trickling keeps a connection).
port=$(free_port)
cat >"$work/sluice.conf" <<CONF
[server]
listen = 127.0.0.1:$port
max_connections = $((crowd + 1000))
max_connections_per_ip = 50
junk_command_limit = $junk_limit
command_timeout = $cmd_timeout
greeting_timeout = $cmd_timeout
reverse_dns = no
[upstream]
servers = 127.0.0.1:$sink_port
[stats]
listen = no
CONF
"$sluice" -c "$work/sluice.conf" >"$work/sluice.out" 2>"$work/sluice.log" &
sluice_pid=$!
pids+=("$sluice_pid")
wait_port "$port" || { tail "$work/sluice.log" >&2; die "sluice did not start"; }
echo "== sluice $("$sluice" --version 2>&1 | head -1), pid $sluice_pid, fd limit $(awk '/Max open files/ {print $4}' /proc/$sluice_pid/limits);" \
    "$(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "   config: max_connections $((crowd + 1000)), max_connections_per_ip 50," \
    "junk_command_limit $junk_limit, command_timeout $cmd_timeout; smtp-sink -m $sink_m"

sink_count() { tr '\r' '\n' <"$work/sink.out" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1; }
"$tool" --server "127.0.0.1:$port" --pid "$sluice_pid" --idle "$idle" --slowloris "$slow" \
    --flood "$flood" --deaf "$deaf" --idle-mail "$idle_mail" --baseline "$baseline" --duration "$duration" --size "$size" "${extra[@]}" \
    | tee "$work/tool.out"
rc=${PIPESTATUS[0]}
kill -0 "$sluice_pid" 2>/dev/null || { tail "$work/sluice.log"; die "sluice died during the run"; }
sleep 1
got=$(sink_count)
sent=$(sed -n 's/.*good_total_ok=\([0-9]*\).*/\1/p' "$work/tool.out")
echo "sink counted ${got:-0} messages; the good client was told 250 for ${sent:-?}"
[ "${got:-0}" = "${sent:-x}" ] || { echo "!! MISMATCH"; rc=1; }
warn=$(grep -c " warning: \| error: " "$work/sluice.log")
echo "sluice log: $(wc -l <"$work/sluice.log") lines ($(wc -c <"$work/sluice.log") bytes), $warn warnings/errors; most frequent (numbers as N):"
sed -E "s/^[^ ]+ //; s/sid=[0-9]+ //; s/client=[0-9.:]+//; s/[0-9.]+/N/g" "$work/sluice.log" | sort | uniq -c | sort -rn | head -5
exit "$rc"
