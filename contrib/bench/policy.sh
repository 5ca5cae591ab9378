#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# policy.sh: what the policy plugins cost per message. One connection per
# message (sluice-bench --reconnect: connect, EHLO, MAIL, RCPT, DATA, QUIT,
# as mail reaches an MX), S sessions x 4 KiB, into Postfix's smtp-sink,
# side by side in interleaved rounds (median of R):
#
#   empty      sluice with no plugins
#   memory     ratelimit (4 rules) + greylist, [state] in memory
#   redis      the same chain, [state] on a local redis-server
#   redis x3   three such instances behind HAProxy (round robin, PROXY v2)
#
# Prints msg/s, sluice CPU ms per message (all instances), Redis CPU ms and
# Redis commands per message, p50/p99 latency. The greylist is warmed first
# (its triplet passed), so every message pays the full check without being
# refused; the rate limits are far above the load.
#
# On a 2-core machine the client, sluice, Redis and the sink share the same
# cores: 3 instances cannot scale here; the per-message costs are what
# carry over to a multi-machine deployment (README, "Several instances").
#
#   contrib/bench/policy.sh [--build DIR] [--messages N] [--sessions S] [--repeat R]
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
build=$repo/build-dev
messages=10000
sessions=32
repeat=3
while [ $# -gt 0 ]; do
    case "$1" in
    --build) build=$2; shift 2 ;;
    --messages) messages=$2; shift 2 ;;
    --sessions) sessions=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    *) echo "usage: $0 [--build DIR] [--messages N] [--sessions S] [--repeat R]" >&2; exit 2 ;;
    esac
done

sluice=$build/proxy/sluice
bench=$build/contrib/bench/sluice-bench
plugins=$build/plugins
for f in "$sluice" "$bench" "$plugins/ratelimit.so" "$plugins/greylist.so"; do
    [ -e "$f" ] || { echo "policy.sh: $f missing (build first)" >&2; exit 1; }
done
for p in smtp-sink redis-server haproxy; do
    command -v "$p" >/dev/null || [ -x "/usr/sbin/$p" ] ||
        { echo "policy.sh: needs $p (contrib/scripts/install-deps.sh)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/sluice-policy.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { $py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
py=/usr/bin/python3
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "policy.sh: nothing listens on $1" >&2
    exit 1
}
state_ops() { # summed sluice_state_operations_total of the stats ports
    local t=0 v
    for p in "$@"; do
        v=$(curl -s "http://127.0.0.1:$p/metrics" | sed -n 's/^sluice_state_operations_total \([0-9]*\).*/\1/p')
        t=$((t + ${v:-0}))
    done
    echo $t
}
cpu_ms() { # summed user+system CPU of the pids, in ms
    local t=0
    for p in "$@"; do
        read -r -a f <"/proc/$p/stat"
        t=$((t + f[13] + f[14]))
    done
    echo $((t * 1000 / $(getconf CLK_TCK)))
}

sink_port=$(free_port)
/usr/sbin/smtp-sink -c -u nobody 127.0.0.1:"$sink_port" 4096 >/dev/null 2>&1 &
pids+=($!)
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$work" >/dev/null 2>&1 &
redis_pid=$!
pids+=($redis_pid)
wait_port "$sink_port"
wait_port "$redis_port"
rcli() { redis-cli -p "$redis_port" "$@"; }

cat >"$work/ratelimit.rules" <<EOF
conn_ip      connections  client_ip    100000000  1h
msgs_ip      messages     client_ip    100000000  1h
rcpts_ip     recipients   client_ip    100000000  1h
msgs_sender  messages     sender       100000000  1h
EOF

# conf NAME PORT STATE [proxy]: one sluice configuration; its stats
# endpoint port goes to stats[NAME]
declare -A stats
conf() {
    local name=$1 port=$2 state=$3 proxy=${4:-}
    stats[$name]=$(free_port)
    {
        printf '[server]\nlisten = 127.0.0.1:%s\nhostname = bench.test\nlog_level = warn\n' "$port"
        printf 'plugin_dir = %s\nmax_connections = 2000\nmax_connections_per_ip = 2000\n' "$plugins"
        printf '[upstream]\nservers = 127.0.0.1:%s\nxclient = no\nxforward = no\n' "$sink_port"
        printf '[stats]\nlisten = 127.0.0.1:%s\n' "${stats[$name]}"
        if [ "$name" = empty ]; then
            printf '[chain]\nplugins =\n'
        else
            printf '[chain]\nplugins = rl, gl\n'
            printf '[plugin rl]\npath = ratelimit\nrules = %s\nexempt_networks =\n' "$work/ratelimit.rules"
            printf '[plugin gl]\npath = greylist\ndelay = 1s\nexempt_networks =\nauto_allow = 0\n'
        fi
        if [ "$state" = redis ]; then
            printf '[state]\nbackend = redis\nredis = 127.0.0.1:%s\n' "$redis_port"
        fi
        if [ -n "$proxy" ]; then
            printf '[listener edge]\nlisten = 127.0.0.1:%s\nproxy_protocol = yes\nproxy_trusted = 127.0.0.5/32\n' "$proxy"
        fi
    } >"$work/$name.conf"
}

start_sluice() { # NAME -> pid in $spid
    "$sluice" -c "$work/$1.conf" >"$work/$1.log" 2>&1 &
    spid=$!
    pids+=($spid)
}

declare -A port pidlist statlist
for t in empty memory redis; do
    port[$t]=$(free_port)
    conf "$t" "${port[$t]}" "$([ $t = redis ] && echo redis || echo memory)"
    start_sluice "$t"
    pidlist[$t]=$spid
    statlist[$t]=${stats[$t]}
    wait_port "${port[$t]}"
done
edges=()
pidlist[redis3]=""
statlist[redis3]=""
for i in 1 2 3; do
    p=$(free_port)
    e=$(free_port)
    conf "redis3-$i" "$p" redis "$e"
    start_sluice "redis3-$i"
    pidlist[redis3]="${pidlist[redis3]} $spid"
    statlist[redis3]="${statlist[redis3]} ${stats[redis3-$i]}"
    wait_port "$e"
    edges+=("$e")
done
port[redis3]=$(free_port)
{
    printf 'global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n'
    printf '  timeout client 30s\n  timeout server 30s\nfrontend fe\n  bind 127.0.0.1:%s\n' "${port[redis3]}"
    printf '  default_backend be\nbackend be\n  balance roundrobin\n'
    for i in 0 1 2; do
        printf '  server s%d 127.0.0.1:%s source 127.0.0.5 send-proxy-v2\n' "$i" "${edges[$i]}"
    done
} >"$work/haproxy.cfg"
haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
wait_port "${port[redis3]}"
sleep 1 # Redis connections up

# Warm the greylist: the first attempt is greylisted, the retry after the
# delay passes the triplet (shared by the three Redis instances).
for t in memory redis redis3; do
    "$bench" --server 127.0.0.1:"${port[$t]}" --messages 1 --quiet >/dev/null 2>&1 || true
done
sleep 1.3
for t in memory redis redis3; do
    "$bench" --server 127.0.0.1:"${port[$t]}" --messages 3 --quiet >/dev/null ||
        { echo "policy.sh: $t does not pass mail after the warm-up (see $work/*.log)" >&2; exit 1; }
done

echo "== policy plugins: $sessions sessions x 4 KiB, one connection per message," \
    "$messages messages per cell, $repeat rounds, $(nproc) cores"
declare -A res
for r in $(seq "$repeat"); do
    for t in empty memory redis redis3; do
        # shellcheck disable=SC2086
        c0=$(cpu_ms ${pidlist[$t]})
        r0=$(cpu_ms "$redis_pid")
        k0=$(rcli INFO stats | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p')
        # shellcheck disable=SC2086
        o0=$(state_ops ${statlist[$t]})
        out=$("$bench" --server 127.0.0.1:"${port[$t]}" --sessions "$sessions" \
            --messages "$messages" --reconnect --quiet) || { echo "policy.sh: $t: errors: $out" >&2; exit 1; }
        # shellcheck disable=SC2086
        c1=$(cpu_ms ${pidlist[$t]})
        r1=$(cpu_ms "$redis_pid")
        k1=$(rcli INFO stats | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p')
        # shellcheck disable=SC2086
        o1=$(state_ops ${statlist[$t]})
        kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$out"; }
        res[$t]+="$(kv msgs_per_s) $(( (c1 - c0) * 1000 / messages )) $(( (r1 - r0) * 1000 / messages )) $(( (k1 - k0) * 100 / messages )) $(kv lat_p50_ms) $(kv lat_p99_ms) $(( (o1 - o0) * 100 / messages ));"
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { tr ';' '\n' <<<"${res[$1]}" | awk -v c="$2" 'NF {print $c}' | median; }
# state ops/msg: what plugins asked for (each one round trip to Redis, the
# ones of one hook in parallel); redis cmd/msg: what Redis executed, the
# commands inside the Lua scripts included.
printf '%-8s %9s %14s %13s %14s %14s %8s %8s\n' target msg/s "sluice us/msg" "redis us/msg" \
    "state ops/msg" "redis cmd/msg" "p50 ms" "p99 ms"
for t in empty memory redis redis3; do
    printf '%-8s %9s %14s %13s %14s %14s %8s %8s\n' "$t" "$(col "$t" 1)" "$(col "$t" 2)" \
        "$(col "$t" 3)" "$(awk -v v="$(col "$t" 7)" 'BEGIN {printf "%.2f", v / 100}')" \
        "$(awk -v v="$(col "$t" 4)" 'BEGIN {printf "%.2f", v / 100}')" "$(col "$t" 5)" "$(col "$t" 6)"
done
