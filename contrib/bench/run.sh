#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# run.sh: sluice's benchmark, in one run, side by side on this machine.
#
#   direct:      smtp-source  -> smtp-sink        sluice-bench -> smtp-sink
#   via sluice:  smtp-source  -> sluice -> smtp-sink   (and sluice-bench)
#
# at {1, 32} sessions x {4 KiB, 64 KiB} messages; then sluice's RSS with
# 1,000 idle EHLO'd connections. Checks that the sink received exactly the
# messages the clients saw accepted, prints a table and PASS/MISS against the
# targets of the core issue. Loopback only; everything it starts is stopped
# on exit. See contrib/bench/README.md.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=""
sluice=""
config=""
chain=""
scrape=0
standin=0
keep=0
scale=1
repeat=3
save=""
idle_n=1000
idle_spread=50

usage() {
    cat <<EOF
usage: $0 [options]
  --build DIR      build directory (default: $repo/build-bench; built if needed)
  --sluice PATH    sluice binary (default: DIR/proxy/sluice)
  --config FILE    pass -c FILE to sluice (listen/upstream still given on the command line)
  --chain FILE     extra scenario: a second sluice with -c FILE (e.g. 5 no-op plugins);
                   32 sessions x 4 KiB, throughput compared with the empty chain
  --scrape         extra scenario: scrape http://127.0.0.1:STATSPORT/metrics every
                   100 ms during 32 x 4 KiB via sluice; cost compared with no scrape
                   (sluice always runs with --stats-listen on a free port)
  --standin        no sluice: measure the "via" column against the sink directly
                   (only to develop this script; figures then mean nothing)
  --scale F        multiply message counts by F (e.g. 0.2 for a quick run)
  --repeat R       rounds per table cell, median taken (default 3)
  --idle N         idle connections for the RSS figure (default 1000)
  --save FILE      also write the machine-readable results (one key=value line per cell)
  --keep           keep the work directory (logs, sink output)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
    --build) build=$2; shift 2 ;;
    --sluice) sluice=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --chain) chain=$2; shift 2 ;;
    --scrape) scrape=1; shift ;;
    --standin) standin=1; shift ;;
    --scale) scale=$2; shift 2 ;;
    --idle) idle_n=$2; shift 2 ;;
    --repeat) repeat=$2; shift 2 ;;
    --save) save=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done

py=/usr/bin/python3
build=${build:-$repo/build-bench}
sluice=${sluice:-$build/proxy/sluice}
bench=$build/contrib/bench/sluice-bench
source_bin=/usr/sbin/smtp-source
sink_bin=/usr/sbin/smtp-sink

die() { echo "run.sh: $*" >&2; exit 1; }
[ -x "$source_bin" ] && [ -x "$sink_bin" ] || die "needs Postfix's smtp-source and smtp-sink (apt-get install postfix)"

# --- build ----------------------------------------------------------------
if [ ! -x "$bench" ] || { [ "$standin" = 0 ] && [ ! -x "$sluice" ]; }; then
    echo "== building in $build"
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_TESTS=OFF >/dev/null \
        || die "cmake failed"
    targets="sluice-bench"
    [ "$standin" = 0 ] && targets="$targets sluice"
    # shellcheck disable=SC2086
    make -C "$build" -j"$(nproc)" $targets >/dev/null || die "build failed"
fi
[ -x "$bench" ] || die "no $bench"
[ "$standin" = 1 ] || [ -x "$sluice" ] || die "no sluice at $sluice (build it, or use --standin)"

# --- environment ----------------------------------------------------------
work=$(mktemp -d /tmp/sluice-bench.XXXXXX)
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${pids[@]}"; do
        wait "$p" 2>/dev/null
    done
    if [ "$keep" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1,000 idle connections need descriptors in sluice, the sink and the client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((idle_n + 200)) ] || die "ulimit -n $(ulimit -n) is too small for $idle_n idle connections"

free_port() {
    "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # port timeout_s
    local i
    for ((i = 0; i < $2 * 20; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}
now() { date +%s.%N; }
# utime+stime of a process in clock ticks (fields 14 and 15 of /proc/PID/stat;
# the command name in field 2 may hold spaces, so cut after the last ')').
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
calc() { awk "BEGIN { printf \"%s\", ($*) }"; }
kv() { # key line: value of key=VALUE in a RESULT line
    tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"
}

sink_port=$(free_port)
sink_out=$work/sink.out
"$sink_bin" -c -u nobody -m 4096 "127.0.0.1:$sink_port" 4096 >"$sink_out" 2>"$work/sink.err" &
sink_pid=$!
pids+=("$sink_pid")
wait_port "$sink_port" 5 || die "smtp-sink did not start: $(cat "$work/sink.err")"
# CPU figures are read from /proc/PID: make sure PID is the program itself.
[ "$(cat "/proc/$sink_pid/comm")" = smtp-sink ] || die "pid $sink_pid is not smtp-sink"

# The sink prints "sess=N quit=N mesg=N" followed by CR on every message.
sink_count() { tr '\r' '\n' <"$sink_out" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1; }
# Wait until the sink's counter reaches $1 (the 250 reaches the client a
# hair before the counter line is written); print the final count.
sink_wait() {
    local want=$1 got i
    for ((i = 0; i < 60; i++)); do
        got=$(sink_count)
        got=${got:-0}
        [ "$got" -ge "$want" ] && break
        sleep 0.05
    done
    sleep 0.1
    got=$(sink_count)
    echo "${got:-0}"
}

start_sluice() { # name port [extra args...]: sets sluice_pid
    local name=$1 port=$2
    shift 2
    "$sluice" "$@" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$sink_port" \
        >"$work/$name.out" 2>"$work/$name.log" &
    sluice_pid=$!
    pids+=("$sluice_pid")
    if ! wait_port "$port" 10; then
        echo "--- $work/$name.log:" >&2
        tail -20 "$work/$name.log" >&2
        die "sluice ($name) did not open 127.0.0.1:$port"
    fi
    [ "$(cat "/proc/$sluice_pid/comm")" = sluice ] || die "pid $sluice_pid is not sluice"
}

stats_port=""
sluice_args=()
if [ "$standin" = 1 ]; then
    via_port=$sink_port
    sluice_pid=""
    echo "!! STAND-IN MODE: the 'via sluice' column is the sink again, not sluice"
else
    via_port=$(free_port)
    # The stats endpoint stays on (as in production), on a port of our own:
    # its default 127.0.0.1:9025 may be taken.
    stats_port=$(free_port)
    if [ -n "$config" ]; then
        sluice_args+=(-c "$config")
    else
        # Without a config, only the connection limits are raised so that
        # 1,000 idle connections fit (defaults: 1000 in total, 50 per IP),
        # and the client-name lookup is off: the clients come from 127.0.0.x
        # addresses without names, whose reverse lookups would leave
        # loopback for the resolver (and smtp-sink does none either).
        printf '[server]\nmax_connections = 4096\nmax_connections_per_ip = 4096\nreverse_dns = no\n' >"$work/bench.conf"
        if "$sluice" --check -c "$work/bench.conf" --listen "127.0.0.1:$via_port" \
            --upstream "127.0.0.1:$sink_port" --stats-listen "127.0.0.1:$stats_port" \
            >"$work/check.out" 2>&1; then
            sluice_args+=(-c "$work/bench.conf")
        else
            echo "   (sluice --check refused the bench config, running with defaults: $(head -1 "$work/check.out"))"
        fi
    fi
    sluice_args+=(--stats-listen "127.0.0.1:$stats_port")
    start_sluice sluice "$via_port" "${sluice_args[@]}"
fi
main_sluice_pid=$sluice_pid

echo "== sluice-bench vs smtp-source, $(nproc) cores, $(uname -r); sink 127.0.0.1:$sink_port, sluice 127.0.0.1:$via_port"
[ -n "$main_sluice_pid" ] && echo "   sluice: $("$sluice" --version 2>&1 | head -1) pid $main_sluice_pid"

# --- idle connections first, on a fresh sluice -----------------------------
# Measured before any load so that freed message buffers cannot hide the
# cost of a connection (malloc would hand them back to the idle sessions).
idle_kib=""
if [ -n "$main_sluice_pid" ]; then
    sleep 0.3
    rss0=$(rss_kib "$main_sluice_pid")
    "$bench" --server "127.0.0.1:$via_port" --idle "$idle_n" --hold 3 --source-spread "$idle_spread" \
        --timeout 10000 --deadline 60 >"$work/idle.out" 2>"$work/idle.err" &
    idle_pid=$!
    pids+=("$idle_pid")
    for ((i = 0; i < 400; i++)); do
        grep -q '^IDLE_READY' "$work/idle.out" && break
        sleep 0.05
    done
    sleep 0.5
    rss1=$(rss_kib "$main_sluice_pid")
    wait "$idle_pid"
    idle_line=$(grep '^RESULT' "$work/idle.out")
    idle_open=$(kv open "$idle_line")
    idle_alive=$(kv alive_after_hold "$idle_line")
    if [ -n "$idle_open" ] && [ "$idle_open" -gt 0 ]; then
        idle_kib=$(calc "($rss1 - $rss0) / $idle_open")
    fi
    echo "   idle: RSS ${rss0} KiB -> ${rss1} KiB with ${idle_open:-0}/$idle_n connections open" \
        "(${idle_alive:-0} alive after the hold) = ${idle_kib:-?} KiB per idle connection"
    grep -q 'error' "$work/idle.err" && sed -n '1,5p' "$work/idle.err"
fi

# --- the load matrix -------------------------------------------------------
# One measurement: tool target sessions size count. Sets r_rate (msgs/s),
# r_acc (accepted per the client), r_ok (counted by the sink), r_sink and
# r_sluice (CPU ticks used meanwhile), r_p50/r_p99 (ms, sluice-bench only),
# r_note (what went wrong).
# Both servers must outlive every run: a dead one would make the figures
# (and /proc reads) meaningless, so stop with the reason instead.
alive() {
    kill -0 "$sink_pid" 2>/dev/null || die "smtp-sink (pid $sink_pid) is gone (killed from outside?)"
    if [ -n "$main_sluice_pid" ] && ! kill -0 "$main_sluice_pid" 2>/dev/null; then
        echo "--- last lines of $work/sluice.log:" >&2
        tail -5 "$work/sluice.log" >&2
        keep=1
        die "sluice (pid $main_sluice_pid) died during the benchmark"
    fi
}

measure() {
    local tool=$1 target=$2 sess=$3 size=$4 count=$5
    alive
    local port=$sink_port spid=""
    [ "$target" = via ] && port=$via_port && spid=$main_sluice_pid
    local before after c0=0 c1=0 s0 s1 t0 t1 line
    before=$(sink_count)
    before=${before:-0}
    s0=$(cpu_ticks "$sink_pid")
    [ -n "$spid" ] && c0=$(cpu_ticks "$spid")
    r_p50=""
    r_p99=""
    r_note=""
    t0=$(now)
    if [ "$tool" = smtp-source ]; then
        # -d: many messages per session, like sluice-bench. -l is the body
        # length; smtp-source adds a few header lines of its own.
        if timeout 300 "$source_bin" -d -s "$sess" -m "$count" -l "$size" -f bench@example.com \
            -t rcpt@example.net "127.0.0.1:$port" >"$work/source.out" 2>&1; then
            r_acc=$count
        else
            r_acc=0
            r_note="smtp-source failed: $(tail -1 "$work/source.out")"
        fi
        t1=$(now)
    else
        line=$(timeout 300 "$bench" --server "127.0.0.1:$port" --sessions "$sess" --messages "$count" \
            --size "$size" --pipelining --timeout 30000 --deadline 280 --quiet 2>"$work/bench.err" \
            | grep '^RESULT')
        t1=$(now)
        r_acc=$(kv ok "$line")
        r_acc=${r_acc:-0}
        r_p50=$(kv lat_p50_ms "$line")
        r_p99=$(kv lat_p99_ms "$line")
        [ "$(kv errors "$line")" = 0 ] || r_note="errors=$(kv errors "$line"): $(head -1 "$work/bench.err")"
    fi
    after=$(sink_wait $((before + r_acc)))
    alive
    s1=$(cpu_ticks "$sink_pid")
    [ -n "$spid" ] && c1=$(cpu_ticks "$spid")
    r_ok=$((after - before))
    if [ "$r_ok" != "$count" ] || [ "$r_acc" != "$count" ]; then
        r_note="${r_note:+$r_note; }LOST: sent $count, client saw $r_acc accepted, sink counted $r_ok"
        lost=1
    fi
    r_rate=$(calc "$r_acc / ($t1 - $t0)")
    r_sink=$((s1 - s0))
    r_sluice=$((c1 - c0))
    return 0
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {print NR ? v[int((NR + 1) / 2)] : 0}'; }

count_for() { # sessions size -> message count per repetition (scaled)
    local n
    case "$1x$2" in
    1x4096) n=2000 ;;
    32x4096) n=10000 ;;
    1x65536) n=1000 ;;
    32x65536) n=2500 ;;
    *) n=1000 ;;
    esac
    calc "int($n * $scale) > 0 ? int($n * $scale) : 1"
}

# One cell of the table: `repeat` rounds of direct then via, back to back so
# that drift hits both alike. Rates and latencies: median over the rounds;
# CPU per message: total ticks over all rounds / total messages.
cell() { # tool sessions size
    local tool=$1 sess=$2 size=$3 count i
    local dr="" vr="" dp50="" vp50="" dp99="" vp99="" dsink=0 vsink=0 vsl=0 dok=0 vok=0 notes=""
    count=$(count_for "$sess" "$size")
    for ((i = 0; i < repeat; i++)); do
        measure "$tool" direct "$sess" "$size" "$count"
        dr+=" $r_rate" dp50+=" $r_p50" dp99+=" $r_p99"
        dsink=$((dsink + r_sink)) dok=$((dok + r_ok))
        [ -n "$r_note" ] && notes+="     direct: $r_note"$'\n'
        measure "$tool" via "$sess" "$size" "$count"
        vr+=" $r_rate" vp50+=" $r_p50" vp99+=" $r_p99"
        vsink=$((vsink + r_sink)) vsl=$((vsl + r_sluice)) vok=$((vok + r_ok))
        [ -n "$r_note" ] && notes+="     via:    $r_note"$'\n'
    done
    local d_rate v_rate ratio v_cpu d_sink v_sink d_p50 v_p50 d_p99 v_p99 lat50="-" lat99="-"
    d_rate=$(median <<<"$dr")
    v_rate=$(median <<<"$vr")
    ratio=$(calc "$d_rate > 0 ? $v_rate / $d_rate : 0")
    d_sink=$(calc "$dsink * 1000 / $hz / ($dok > 0 ? $dok : 1)")
    v_sink=$(calc "$vsink * 1000 / $hz / ($vok > 0 ? $vok : 1)")
    v_cpu=n/a
    [ -n "$main_sluice_pid" ] && v_cpu=$(calc "$vsl * 1000 / $hz / ($vok > 0 ? $vok : 1)")
    if [ "$tool" = sluice-bench ]; then
        d_p50=$(median <<<"$dp50") v_p50=$(median <<<"$vp50")
        d_p99=$(median <<<"$dp99") v_p99=$(median <<<"$vp99")
        lat50=$(printf '%.3f/%.3f' "$d_p50" "$v_p50")
        lat99=$(printf '%.3f/%.3f' "$d_p99" "$v_p99")
    fi
    printf '%-4s %-4s %-12s %2sx%-6s | %9.0f %9.0f %6.2f | %8s ms %7.3f ms %7.3f ms | %15s %15s\n' \
        "$sess" "$((size / 1024))K" "$tool" "$repeat" "$count" "$d_rate" "$v_rate" "$ratio" \
        "$( [ "$v_cpu" = n/a ] && echo n/a || printf '%.3f' "$v_cpu")" "$d_sink" "$v_sink" \
        "$lat50" "$lat99"
    printf '%s' "$notes"
    echo "sess=$sess size=$size tool=$tool msgs=$count repeat=$repeat direct_rate=$d_rate" \
        "via_rate=$v_rate ratio=$ratio sluice_cpu_ms=$v_cpu sink_cpu_direct_ms=$d_sink" \
        "sink_cpu_via_ms=$v_sink p50_direct_ms=${d_p50:--} p50_via_ms=${v_p50:--}" \
        "p99_direct_ms=${d_p99:--} p99_via_ms=${v_p99:--}" >>"$results"
}

lost=0
results=$work/results.txt
: >"$results"
echo
echo "msgs/s: median of $repeat rounds; CPU: ms per message (sluice; sink in the direct and via runs);"
echo "latency: MAIL to final 250, sluice-bench (pipelining), median of the rounds' p50/p99, direct/via"
printf '%-4s %-4s %-12s %9s | %9s %9s %6s | %11s %10s %10s | %15s %15s\n' \
    sess size tool "rounds" "direct/s" "sluice/s" ratio "sluiceCPU" "sinkCPU-d" "sinkCPU-v" \
    "p50 ms d/v" "p99 ms d/v"
printf '%s\n' "$(printf '%.0s-' {1..130})"
for size in 4096 65536; do
    for sess in 1 32; do
        for tool in smtp-source sluice-bench; do
            cell "$tool" "$sess" "$size"
        done
    done
done
[ -n "$save" ] && cp "$results" "$save"

# --- targets ---------------------------------------------------------------
row() { grep "^sess=$1 size=$2 tool=$3 " "$results"; }
verdict() { if [ "$(calc "$1")" = 1 ]; then echo PASS; else echo MISS; fi; }
echo
echo "== targets (core issue, empty chain)"
r=$(row 32 4096 smtp-source)
ratio=$(kv ratio "$r")
echo "  $(verdict "$ratio >= 0.60")  throughput 32 sessions 4 KiB, smtp-source: $(printf '%.2f' "$ratio") x direct (target >= 0.60)"
rb=$(row 32 4096 sluice-bench)
echo "        (sluice-bench, pipelining: $(printf '%.2f' "$(kv ratio "$rb")") x direct)"
cpu=$(kv sluice_cpu_ms "$r")
sinkcpu=$(kv sink_cpu_via_ms "$r")
if [ "$cpu" = n/a ]; then
    echo "  n/a   sluice CPU per message (no sluice)"
else
    echo "  $(verdict "$cpu <= $sinkcpu")  sluice CPU/msg $(printf '%.3f' "$cpu") ms <= smtp-sink CPU/msg $(printf '%.3f' "$sinkcpu") ms (32 sessions 4 KiB, same run)"
fi
r1=$(row 1 4096 sluice-bench)
p50d=$(kv p50_direct_ms "$r1")
p50v=$(kv p50_via_ms "$r1")
echo "  $(verdict "$p50v <= 2 * $p50d")  p50 latency at 1 session 4 KiB: $p50v ms via sluice vs $p50d ms direct (target <= 2x = $(calc "2 * $p50d") ms)"
r1=$(row 1 65536 sluice-bench)
echo "        (64 KiB: $(kv p50_via_ms "$r1") ms vs $(kv p50_direct_ms "$r1") ms)"
if [ -n "$idle_kib" ]; then
    echo "  $(verdict "$idle_kib <= 64")  RSS per idle connection: $(printf '%.1f' "$idle_kib") KiB (target <= 64 KiB; $idle_open connections)"
else
    echo "  n/a   RSS per idle connection (no sluice or no connection opened)"
fi

# --- optional scenarios ------------------------------------------------------
extra_rate() { # port [bench args...] -> msgs/s of 32 x 4 KiB with sluice-bench
    local port=$1 line
    shift
    line=$("$bench" --server "127.0.0.1:$port" --sessions 32 --messages "$(count_for 32 4096)" \
        --size 4096 --pipelining --quiet --deadline 280 "$@" 2>>"$work/bench.err" | grep '^RESULT')
    kv msgs_per_s "$line"
}
# A/B comparison at 32 x 4 KiB: rounds alternate A and B (max(repeat, 3)
# each) so that drift hits both; medians compared. Prints the cost of B in %.
ab_compare() { # label-a port-a args-a label-b port-b args-b (args as one string)
    local la=$1 pa=$2 aa=$3 lb=$4 pb=$5 ab=$6 i ra="" rb="" ma mb n=$repeat
    [ "$n" -lt 3 ] && n=3
    for ((i = 0; i < n; i++)); do
        # shellcheck disable=SC2086
        ra+=" $(extra_rate "$pa" $aa)"
        # shellcheck disable=SC2086
        rb+=" $(extra_rate "$pb" $ab)"
    done
    ma=$(median <<<"$ra")
    mb=$(median <<<"$rb")
    ab_cost=$(calc "$ma > 0 ? 100 * (1 - $mb / $ma) : 100")
    echo "  $la:$ra msgs/s (median $ma)"
    echo "  $lb:$rb msgs/s (median $mb)"
    echo "  cost: $(printf '%.1f' "$ab_cost") % (noise between rounds on a shared 2-core machine is several %)"
}
if [ "$scrape" = 1 ] && [ -n "$stats_port" ]; then
    echo
    echo "== scrape cost: GET http://127.0.0.1:$stats_port/metrics every 100 ms during 32 x 4 KiB (sluice-bench)"
    ab_compare "no scrape  " "$via_port" "" "with scrape" "$via_port" "--scrape 127.0.0.1:$stats_port"
    echo "  $(verdict "$ab_cost <= 2") scrape every 100 ms costs <= 2 % throughput (issue 8)"
fi
if [ -n "$chain" ] && [ "$standin" = 0 ]; then
    echo
    echo "== chain cost: sluice -c $chain vs empty chain, 32 x 4 KiB (sluice-bench)"
    chain_port=$(free_port)
    start_sluice sluice-chain "$chain_port" -c "$chain" --stats-listen "127.0.0.1:$(free_port)"
    ab_compare "empty chain" "$via_port" "" "with chain " "$chain_port" ""
    echo "  $(verdict "$ab_cost <= 3") the chain costs <= 3 % throughput (issue 3's 5 no-op plugins)"
fi

echo
if [ "$lost" = 1 ]; then
    echo "!! the sink did not count every message sent: see the notes above"
    exit 1
fi
echo "every message sent was counted by the sink"
exit 0
