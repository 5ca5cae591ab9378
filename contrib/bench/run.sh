#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# run.sh: sluice's benchmark, in one run, side by side on this machine.
#
#   direct:      client -> smtp-sink
#   empty:       client -> sluice (no plugins) -> smtp-sink
#   full:        client -> sluice (dkim_verify, virus, spam, rewrite, dkim_sign)
#                       -> smtp-sink                                (--full-chain)
#   .../before:  the same through an older sluice binary           (--baseline)
#
# Clients: smtp-source and sluice-bench, each in two modes: one connection
# per message ("per-conn": smtp-source without -d, sluice-bench --reconnect)
# and many messages per connection ("session": smtp-source -d, sluice-bench
# with pipelining). Matrix {1, 32} sessions x {4 KiB, 64 KiB}; then sluice's
# RSS with 1,000 idle EHLO'd connections. Checks that the sink received
# exactly the messages the clients saw accepted (and, for the full chain,
# that every plugin ran on every message and every message was signed),
# prints a table and PASS/MISS against the targets of the core issue and of
# issue 16. Loopback only; everything it starts is stopped on exit. See
# contrib/bench/README.md.
set -u -o pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
build=""
sluice=""
config=""
chain=""
baseline=""
baseline_plugins=""
full_chain=0
matrix=1
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
  --sluice PATH    sluice binary (default: DIR/proxy/sluice); its plugins are
                   looked up in \$(dirname PATH)/../plugins (a build tree)
  --baseline PATH  a second (older) sluice binary measured in the same run,
                   round by round with the current one, for every via-sluice
                   figure ("before" rows); its plugins: \$(dirname PATH)/../plugins
  --baseline-plugins DIR  plugin directory of the baseline (default: as above)
  --full-chain     scenario: the bundled chain of contrib/sluice.conf
                   (dkim_verify, virus with libclamav on a generated database,
                   spam and rewrite with the shipped rules, dkim_sign with an
                   RSA-2048 key) at 32 sessions x {4, 64} KiB, one connection
                   per message, beside direct and the empty chain
  --no-matrix      skip the main matrix (e.g. with --full-chain alone)
  --config FILE    pass -c FILE to the empty-chain sluice(s) (listen/upstream still
                   given on the command line)
  --chain FILE     extra scenario: a second sluice with -c FILE (e.g. 5 no-op plugins);
                   32 sessions x 4 KiB, throughput compared with the empty chain
  --scrape         extra scenario: scrape http://127.0.0.1:STATSPORT/metrics every
                   100 ms during 32 x 4 KiB via sluice; cost compared with no scrape
                   (sluice always runs with --stats-listen on a free port)
  --standin        no sluice: measure the "empty" rows against the sink directly
                   (only to develop this script; figures then mean nothing)
  --scale F        multiply message counts by F (e.g. 0.1 for a quick run)
  --repeat R       rounds per table cell, median taken (default 3)
  --idle N         idle connections for the RSS figure (default 1000)
  --save FILE      also write the machine-readable results (one key=value line per cell)
  --keep           keep the work directory (logs, configurations, probe mail)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
    --build) build=$2; shift 2 ;;
    --sluice) sluice=$2; shift 2 ;;
    --baseline) baseline=$2; shift 2 ;;
    --baseline-plugins) baseline_plugins=$2; shift 2 ;;
    --full-chain) full_chain=1; shift ;;
    --no-matrix) matrix=0; shift ;;
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
{ [ -x "$source_bin" ] && [ -x "$sink_bin" ]; } || die "needs Postfix's smtp-source and smtp-sink (apt-get install postfix)"
[ "$(id -u)" = 0 ] || die "run as root (smtp-sink is started with -u nobody)"
if [ "$standin" = 1 ]; then
    [ -z "$baseline" ] || die "--standin and --baseline do not go together"
    [ "$full_chain" = 0 ] || die "--standin and --full-chain do not go together"
fi
[ -z "$baseline" ] || [ -x "$baseline" ] || die "--baseline $baseline: no such executable"
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || die "--repeat wants a positive integer"

# --- build ----------------------------------------------------------------
plugins_of() { # sluice binary -> its build tree's plugin directory
    (cd "$(dirname "$1")/../plugins" 2>/dev/null && pwd)
}
need_plugins=0
if [ "$full_chain" = 1 ] && [ ! -f "$(plugins_of "$sluice")/virus.so" ]; then
    need_plugins=1
fi
if [ ! -x "$bench" ] || { [ "$standin" = 0 ] && [ ! -x "$sluice" ]; } || [ "$need_plugins" = 1 ]; then
    echo "== building in $build"
    cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_TESTS=OFF >/dev/null \
        || die "cmake failed"
    targets="sluice-bench"
    [ "$standin" = 0 ] && targets="$targets sluice"
    [ "$full_chain" = 1 ] && targets="$targets plugin_dkim plugin_virus plugin_spam plugin_rewrite"
    # shellcheck disable=SC2086
    make -C "$build" -j"$(nproc)" $targets >/dev/null || die "build failed"
fi
[ -x "$bench" ] || die "no $bench"
[ "$standin" = 1 ] || [ -x "$sluice" ] || die "no sluice at $sluice (build it, or use --standin)"
plugdir=""
baseline_plugdir=""
baseline_conf=""
if [ "$full_chain" = 1 ]; then
    plugdir=$(plugins_of "$sluice")
    for p in dkim virus spam rewrite; do
        [ -f "$plugdir/$p.so" ] || die "no $p.so in ${plugdir:-$(dirname "$sluice")/../plugins} (build the plugins)"
    done
    if [ -n "$baseline" ]; then
        baseline_plugdir=${baseline_plugins:-$(plugins_of "$baseline")}
        # The baseline's own example config (an older binary refuses keys
        # added since): from the source tree its build came from.
        bsrc=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$(dirname "$baseline")/../CMakeCache.txt" 2>/dev/null)
        baseline_conf=$repo/contrib/sluice.conf
        [ -n "$bsrc" ] && [ -f "$bsrc/contrib/sluice.conf" ] && baseline_conf=$bsrc/contrib/sluice.conf
        for p in dkim virus spam rewrite; do
            [ -f "$baseline_plugdir/$p.so" ] \
                || die "no $p.so in ${baseline_plugdir:-$(dirname "$baseline")/../plugins} (baseline's plugins; see --baseline-plugins)"
        done
    fi
    command -v openssl >/dev/null || die "--full-chain needs openssl (for the DKIM key)"
    command -v curl >/dev/null || die "--full-chain needs curl (to read sluice's /metrics)"
fi

# --- environment ----------------------------------------------------------
work=$(mktemp -d /tmp/sluice-bench.XXXXXX)
# smtp-sink runs as nobody: it must reach the probe's dump directory.
chmod 711 "$work"
pids=()
# shellcheck disable=SC2317 # called by the EXIT trap
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
forget_proc() { # pid: one process we started is gone (waited for)
    local p=$1 q keep_pids=()
    for q in "${pids[@]}"; do
        [ "$q" = "$p" ] || keep_pids+=("$q")
    done
    pids=("${keep_pids[@]}")
}
stop_proc() { # pid: stop one process we started and forget it
    kill "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    forget_proc "$1"
}

# 1,000 idle connections need descriptors in sluice, the sink and the client.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((idle_n + 200)) ] || die "ulimit -n $(ulimit -n) is too small for $idle_n idle connections"

used_ports=" "
free_port() { # a free loopback port not handed out before in this run
    local p i
    for ((i = 0; i < 20; i++)); do
        p=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        case "$used_ports" in *" $p "*) continue ;; esac
        used_ports+="$p "
        echo "$p"
        return 0
    done
    die "no free port"
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
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
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

# Targets: direct (the sink itself), empty (sluice without plugins), full
# (the bundled chain); with --baseline also empty_before and full_before.
declare -A t_port t_pid t_bin t_label t_stats t_log t_check
t_port[direct]=$sink_port
t_pid[direct]=""
t_label[direct]="direct"

start_sluice() { # target binary port upstream_port [extra args...]: sets sluice_pid
    local name=$1 bin=$2 port=$3 up=$4
    shift 4
    "$bin" "$@" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$up" \
        >"$work/$name.out" 2>"$work/$name.log" &
    sluice_pid=$!
    pids+=("$sluice_pid")
    if ! wait_port "$port" 10; then
        echo "--- $work/$name.log:" >&2
        tail -20 "$work/$name.log" >&2
        die "sluice ($name, $bin) did not open 127.0.0.1:$port"
    fi
    [ "$(cat "/proc/$sluice_pid/comm")" = sluice ] || die "pid $sluice_pid is not sluice"
}
add_target() { # name label binary [sluice args...]
    local name=$1 label=$2 bin=$3 port stats
    shift 3
    port=$(free_port)
    stats=$(free_port)
    start_sluice "$name" "$bin" "$port" "$sink_port" "$@" --stats-listen "127.0.0.1:$stats"
    t_port[$name]=$port
    t_pid[$name]=$sluice_pid
    t_bin[$name]=$bin
    t_label[$name]=$label
    t_stats[$name]=$stats
    t_log[$name]=$work/$name.log
    t_check[$name]=0
}

empty_args=()
if [ "$standin" = 1 ]; then
    t_port[empty]=$sink_port
    t_pid[empty]=""
    t_label[empty]="empty(STANDIN)"
    echo "!! STAND-IN MODE: the 'empty' rows are the sink again, not sluice"
else
    if [ -n "$config" ]; then
        empty_args+=(-c "$config")
    else
        # Without a config, only the connection limits are raised so that
        # 1,000 idle connections fit (defaults: 1000 in total, 50 per IP),
        # and the client-name lookup is off: the clients come from 127.0.0.x
        # addresses without names, whose reverse lookups would leave
        # loopback for the resolver (and smtp-sink does none either).
        printf '[server]\nmax_connections = 4096\nmax_connections_per_ip = 4096\nreverse_dns = no\n' >"$work/bench.conf"
        if "$sluice" --check -c "$work/bench.conf" --listen "127.0.0.1:$(free_port)" \
            --upstream "127.0.0.1:$sink_port" >"$work/check.out" 2>&1; then
            empty_args+=(-c "$work/bench.conf")
        else
            echo "   (sluice --check refused the bench config, running with defaults: $(head -1 "$work/check.out"))"
        fi
    fi
    # The stats endpoint stays on (as in production), on a port of our own:
    # its default 127.0.0.1:9025 may be taken.
    add_target empty "empty" "$sluice" "${empty_args[@]}"
    if [ -n "$baseline" ]; then
        add_target empty_before "empty/before" "$baseline" "${empty_args[@]}"
    fi
fi
via_port=${t_port[empty]}
stats_port=${t_stats[empty]:-}

echo "== sluice-bench and smtp-source, $(nproc) cores, $(uname -r); sink 127.0.0.1:$sink_port"
for t in empty empty_before; do
    [ -n "${t_pid[$t]:-}" ] || continue
    echo "   ${t_label[$t]}: ${t_bin[$t]} ($("${t_bin[$t]}" --version 2>&1 | head -1)) pid ${t_pid[$t]} 127.0.0.1:${t_port[$t]}"
done

# --- the full chain: configuration, probe ------------------------------------
# The configuration is contrib/sluice.conf with only these keys changed:
# addresses and directories of this run, no DNS (reverse_dns = no, DKIM keys
# from keys_file), no XCLIENT/XFORWARD (the chain is measured; the empty chain runs with the defaults), a higher
# connection limit, log_level = warn, the generated virus database and DKIM
# key, absolute paths for the shipped rules (of the tree the example config
# comes from: the baseline's own), and the plugin directory of the binary's
# own build. The sections of plugins not in the chain (they
# need the network) are left out.
full_conf() { # out plugin_dir listen_port stats_port [example config]
    "$py" - "${5:-$repo/contrib/sluice.conf}" "$1" "$work" "$repo" "$2" "$3" "$sink_port" "$4" <<'PYEOF'
import os, re, sys
src, dst, work, repo, plugdir, port, sink, stats = sys.argv[1:9]
# The shipped rules of the tree the example config comes from: a baseline
# build refuses rule-file lines added since (score lines for Bayes bands).
root = os.path.dirname(os.path.dirname(os.path.abspath(src)))
if os.path.isfile(root + "/rules/spam.rules"):
    repo = root
set_keys = {
    "server": {"listen": "127.0.0.1:" + port, "hostname": "sluice.bench",
               "spool_dir": work + "/spool", "quarantine_dir": work + "/quarantine",
               "reverse_dns": "no", "log_level": "warn", "max_connections": "4096",
               "max_connections_per_ip": "4096", "plugin_dir": plugdir},
    "upstream": {"servers": "127.0.0.1:" + sink, "xclient": "no", "xforward": "no"},
    "stats": {"listen": "127.0.0.1:" + stats},
    "chain": {"plugins": "dkim_verify, virus, spam, rewrite, dkim_sign"},
    "plugin dkim_verify": {"keys_file": work + "/dkim/keys.txt"},
    "plugin virus": {"database": work + "/clamav", "reload_check": "0"},
    "plugin spam": {"rules": repo + "/rules/spam.rules"},
    "plugin rewrite": {"rules": repo + "/rules/rewrite.rules"},
    "plugin dkim_sign": {"signing_table": work + "/dkim/signing.table"},
}
drop = {"plugin mailauth", "plugin dnsbl", "plugin opendmarc"}
out, section, done = [], None, set()
def flush(sec):
    for k, v in set_keys.get(sec, {}).items():
        if (sec, k) not in done:
            out.append("%s = %s" % (k, v))
            done.add((sec, k))
for line in open(src):
    line = line.rstrip("\n")
    m = re.match(r"^\[(.+)\]\s*$", line)
    if m:
        flush(section)
        section = m.group(1).strip()
    else:
        m = re.match(r"^([A-Za-z_]+)\s*=", line)
        if m and section in set_keys and m.group(1) in set_keys[section]:
            k = m.group(1)
            if (section, k) in done:
                continue
            line = "%s = %s" % (k, set_keys[section][k])
            done.add((section, k))
    if section in drop:
        continue
    out.append(line)
flush(section)
missing = [s for s in set_keys if not any(d[0] == s for d in done)]
if missing:
    sys.exit("no section %s in %s" % (", ".join(missing), src))
open(dst, "w").write("\n".join(out) + "\n")
PYEOF
}

# /metrics of one sluice, reduced to: accepted messages, received and
# forwarded bytes, "continue" verdicts of dkim_verify virus spam rewrite
# dkim_sign, and everything that says a plugin did not do its work (other
# verdicts, errors, timeouts) summed up.
metrics_snap() { # stats_port
    curl -s --max-time 5 "http://127.0.0.1:$1/metrics" | awk '
    /^sluice_messages_total\{verdict="accepted"\} / { acc = $2 }
    /^sluice_received_bytes_total / { rb = $2 }
    /^sluice_forwarded_bytes_total / { fb = $2 }
    # A plugin may hook several phases (the spam plugin also MAIL and RCPT
    # for its Bayes store): what runs once per message is its DATA hook.
    /^sluice_plugin_duration_seconds_count\{.*phase="data"/ {
        match($0, /plugin="[^"]*"/); p = substr($0, RSTART + 8, RLENGTH - 9)
        c[p] = $2
    }
    /^sluice_plugin_verdicts_total\{/ && !/verdict="continue"/ { bad += $2 }
    /^sluice_plugin_(errors|timeouts)_total\{/ { bad += $2 }
    END { printf "%.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f %.0f\n", acc, rb, fb,
          c["dkim_verify"], c["virus"], c["spam"], c["rewrite"], c["dkim_sign"], bad }'
}
# Differences between two snapshots, as "acc rb fb dv vi sp rw ds bad".
snap_delta() { awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " "); split(b, y, " ");
    for (i = 1; i <= n; i++) printf "%.0f%s", y[i] - x[i], (i < n ? " " : "\n") }'; }

# What a message gains on its way through the full chain (DKIM-Signature,
# Authentication-Results), per client, measured in the probe: the check
# after each measured run asks for (forwarded - received) bytes of at least
# count x this, less half a signature, so that one unsigned message fails it.
declare -A t_growth

if [ "$full_chain" = 1 ]; then
    echo
    echo "== full chain: generated configuration and data in $work"
    mkdir -p "$work/clamav" "$work/dkim" "$work/spool" "$work/quarantine" "$work/dump"
    chmod 777 "$work/dump"
    # A small virus database: one signature, the EICAR test string (assembled
    # here so that no scanner flags this file).
    eicar="X5O!P%@AP[4\\PZX54(P^)7CC)7}\$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!\$H+H*"
    printf '%s' "$eicar" >"$work/eicar.com"
    printf 'Bench.EICAR:0:*:%s\n' "$(od -An -tx1 -v "$work/eicar.com" | tr -d ' \n')" >"$work/clamav/bench.ndb"
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/dkim/bench.pem" 2>/dev/null \
        || die "openssl genpkey failed"
    chmod 600 "$work/dkim/bench.pem"
    pub=$(openssl pkey -in "$work/dkim/bench.pem" -pubout -outform DER 2>/dev/null | base64 -w0)
    printf 'bench._domainkey.example.com v=DKIM1; k=rsa; p=%s\n' "$pub" >"$work/dkim/keys.txt"
    printf 'example.com bench %s rsa-sha256\n' "$work/dkim/bench.pem" >"$work/dkim/signing.table"
    # GTUBE, in two halves for the same reason.
    gtube="XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI"
    gtube+="-UBE-TEST-EMAIL*C.34X"
    echo "   virus database: 1 signature (EICAR); DKIM: example.com selector 'bench', RSA-2048;"
    echo "   spam: $repo/rules/spam.rules; rewrite: $repo/rules/rewrite.rules"

    dump_port=$(free_port)
    "$sink_bin" -u nobody -d "$work/dump/%M." "127.0.0.1:$dump_port" 256 >"$work/dump-sink.out" 2>&1 &
    dump_pid=$!
    pids+=("$dump_pid")
    wait_port "$dump_port" 5 || die "smtp-sink (dump) did not start"

    # Probe one binary's full chain with a sluice of its own in front of a
    # sink that keeps every message: each must arrive signed (d=example.com
    # s=bench) and with dkim_verify's Authentication-Results, every plugin
    # must have run its DATA hook once on each and said "continue" to all, EICAR must be refused by the virus
    # plugin and GTUBE by the spam plugin.
    probe_full() { # target binary plugin_dir
        local name=$1 bin=$2 pd=$3 conf port stats s0 s1 d n files ok=0 f rej k
        conf=$work/$name-probe.conf
        port=$(free_port)
        stats=$(free_port)
        local src=$repo/contrib/sluice.conf
        [ "$bin" = "$baseline" ] && src=$baseline_conf
        full_conf "$conf" "$pd" "$port" "$stats" "$src" || die "cannot write $conf"
        if ! "$bin" --check -c "$conf" >"$work/$name.check" 2>&1; then
            cat "$work/$name.check" >&2
            die "$bin --check refused the full-chain configuration $conf"
        fi
        start_sluice "$name-probe" "$bin" "$port" "$dump_port" -c "$conf" --stats-listen "127.0.0.1:$stats"
        local probe_pid=$sluice_pid
        rm -f "$work"/dump/*
        n=10
        for k in source bench; do
            s0=$(metrics_snap "$stats")
            if [ "$k" = source ]; then
                timeout 60 "$source_bin" -s 2 -m "$n" -l 4096 -f bench@example.com -t rcpt@example.net \
                    "127.0.0.1:$port" >"$work/probe.out" 2>&1 || die "probe ($name): smtp-source failed: $(tail -1 "$work/probe.out")"
            else
                timeout 60 "$bench" --server "127.0.0.1:$port" --sessions 2 --messages "$n" --size 4096 \
                    --reconnect --pipelining --quiet --deadline 50 >"$work/probe.out" 2>&1 \
                    || die "probe ($name): sluice-bench failed: $(head -3 "$work/probe.out")"
            fi
            s1=$(metrics_snap "$stats")
            d=$(snap_delta "$s0" "$s1")
            read -r -a dv <<<"$d"
            { [ "${dv[0]}" = "$n" ] && [ "${dv[3]}" = "$n" ] && [ "${dv[4]}" = "$n" ] && [ "${dv[5]}" = "$n" ] \
                && [ "${dv[6]}" -ge "$n" ] && [ "${dv[7]}" = "$n" ] && [ "${dv[8]}" = 0 ]; } \
                || die "probe ($name, $k): plugins did not all run on every message (accepted dkim_verify virus spam rewrite dkim_sign bad: $d)"
            t_growth[$name:$k]=$(calc "(${dv[2]} - ${dv[1]}) / $n")
        done
        for ((k = 0; k < 60; k++)); do
            files=$(find "$work/dump" -type f | wc -l)
            [ "$files" -ge $((2 * n)) ] && break
            sleep 0.05
        done
        for f in "$work"/dump/*; do
            [ -f "$f" ] || continue
            grep -q '^DKIM-Signature: v=1; a=rsa-sha256; .*d=example.com;' "$f" \
                && grep -q '[[:space:]]s=bench;' "$f" \
                && grep -q '^Authentication-Results: sluice.example; dkim=none' "$f" \
                && ! grep -q '^X-Sluice-Skipped' "$f" \
                && ok=$((ok + 1))
        done
        [ "$ok" = $((2 * n)) ] || { keep=1; die "probe ($name): $ok of $files messages at the sink signed and verified (want $((2 * n))); see $work/dump"; }
        rej=$("$py" - "$port" "$work/eicar.com" "$gtube" <<'PYEOF'
import smtplib, sys
port, eicar, gtube = int(sys.argv[1]), open(sys.argv[2]).read(), sys.argv[3]
def send(body):
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    try:
        s.sendmail("bench@example.com", ["rcpt@example.net"],
                   "From: <bench@example.com>\r\nTo: <rcpt@example.net>\r\n"
                   "Subject: probe\r\n\r\n" + body + "\r\n")
        return "250"
    except smtplib.SMTPDataError as e:
        return str(e.smtp_code)
    finally:
        try:
            s.quit()
        except Exception:
            pass
print(send(eicar), send(gtube))
PYEOF
)
        [ "$rej" = "554 554" ] || die "probe ($name): EICAR and GTUBE got '$rej', want 554 554 (virus and spam plugins)"
        stop_proc "$probe_pid"
        printf '   probe %-12s %s: %d/%d messages signed at the sink, every plugin ran on each, EICAR and GTUBE refused;\n' \
            "$name" "$bin" "$ok" "$((2 * n))"
        printf '   %-18s %s: +%s bytes per smtp-source message, +%s per sluice-bench message\n' \
            "" "$pd" "${t_growth[$name:source]}" "${t_growth[$name:bench]}"
    }
    probe_full full "$sluice" "$plugdir"
    [ -n "$baseline" ] && probe_full full_before "$baseline" "$baseline_plugdir"
    stop_proc "$dump_pid"

    for t in full full_before; do
        [ "$t" = full_before ] && [ -z "$baseline" ] && continue
        bin=$sluice pd=$plugdir label="full"
        [ "$t" = full_before ] && bin=$baseline pd=$baseline_plugdir label="full/before"
        port=$(free_port)
        stats=$(free_port)
        src=$repo/contrib/sluice.conf
        [ "$t" = full_before ] && src=$baseline_conf
        full_conf "$work/$t.conf" "$pd" "$port" "$stats" "$src" || die "cannot write $work/$t.conf"
        start_sluice "$t" "$bin" "$port" "$sink_port" -c "$work/$t.conf"
        t_port[$t]=$port t_pid[$t]=$sluice_pid t_bin[$t]=$bin t_label[$t]=$label
        t_stats[$t]=$stats t_log[$t]=$work/$t.log t_check[$t]=1
        echo "   ${t_label[$t]}: $bin -c $work/$t.conf pid $sluice_pid 127.0.0.1:$port"
    done
fi

# --- idle connections first, on fresh sluices ---------------------------------
# Measured before any load so that freed message buffers cannot hide the
# cost of a connection (malloc would hand them back to the idle sessions).
declare -A idle_kib idle_line_of
idle_rss() { # target
    local t=$1 pid=${t_pid[$1]} port=${t_port[$1]} rss0 rss1 i line open alive
    sleep 0.3
    rss0=$(rss_kib "$pid")
    "$bench" --server "127.0.0.1:$port" --idle "$idle_n" --hold 3 --source-spread "$idle_spread" \
        --timeout 10000 --deadline 60 >"$work/idle.out" 2>"$work/idle.err" &
    local idle_pid=$!
    pids+=("$idle_pid")
    for ((i = 0; i < 400; i++)); do
        grep -q '^IDLE_READY' "$work/idle.out" && break
        sleep 0.05
    done
    sleep 0.5
    rss1=$(rss_kib "$pid")
    wait "$idle_pid"
    forget_proc "$idle_pid"
    line=$(grep '^RESULT' "$work/idle.out")
    open=$(kv open "$line")
    alive=$(kv alive_after_hold "$line")
    if [ -n "$open" ] && [ "$open" -gt 0 ]; then
        idle_kib[$t]=$(calc "($rss1 - $rss0) / $open")
    fi
    idle_line_of[$t]="RSS ${rss0} KiB -> ${rss1} KiB with ${open:-0}/$idle_n connections open (${alive:-0} alive after the hold) = ${idle_kib[$t]:-?} KiB per idle connection"
    echo "   idle, ${t_label[$t]}: ${idle_line_of[$t]}"
    grep -q 'error' "$work/idle.err" && sed -n '1,5p' "$work/idle.err"
    return 0
}
for t in empty empty_before; do
    [ -n "${t_pid[$t]:-}" ] && idle_rss "$t"
done

# --- measurements -----------------------------------------------------------
# Every sluice and the sink must outlive every run: a dead one would make the
# figures (and /proc reads) meaningless, so stop with the reason instead.
alive() {
    local t
    kill -0 "$sink_pid" 2>/dev/null || die "smtp-sink (pid $sink_pid) is gone (killed from outside?)"
    for t in "${!t_pid[@]}"; do
        [ -n "${t_pid[$t]}" ] || continue
        if ! kill -0 "${t_pid[$t]}" 2>/dev/null; then
            echo "--- last lines of ${t_log[$t]}:" >&2
            tail -5 "${t_log[$t]}" >&2
            keep=1
            die "sluice ${t_label[$t]} (pid ${t_pid[$t]}) died during the benchmark"
        fi
    done
}

# One measurement: tool target sessions size count, where tool is one of
#   source-conn  smtp-source, one connection per message (no -d)
#   source-sess  smtp-source -d, many messages per connection
#   bench-sess   sluice-bench --pipelining, many messages per connection
#   bench-conn   sluice-bench --reconnect --pipelining
# Sets r_rate (msgs/s), r_acc (accepted per the client), r_ok (counted by
# the sink), r_sink and r_sluice (CPU ticks used meanwhile), r_p50/r_p99
# (ms, sluice-bench only), r_note (what went wrong).
measure() {
    local tool=$1 target=$2 sess=$3 size=$4 count=$5
    alive
    local port=${t_port[$target]} spid=${t_pid[$target]}
    local before after c0=0 c1=0 s0 s1 t0 t1 line m0="" m1 d
    [ "${t_check[$target]:-0}" = 1 ] && m0=$(metrics_snap "${t_stats[$target]}")
    before=$(sink_count)
    before=${before:-0}
    s0=$(cpu_ticks "$sink_pid")
    [ -n "$spid" ] && c0=$(cpu_ticks "$spid")
    r_p50=""
    r_p99=""
    r_note=""
    t0=$(now)
    case "$tool" in
    source-*)
        # -l is the body length; smtp-source adds a few header lines of its
        # own (From: <sender>, To:, Date:, Message-Id:).
        local dflag=()
        [ "$tool" = source-sess ] && dflag=(-d)
        if timeout 300 "$source_bin" "${dflag[@]}" -s "$sess" -m "$count" -l "$size" -f bench@example.com \
            -t rcpt@example.net "127.0.0.1:$port" >"$work/source.out" 2>&1; then
            r_acc=$count
        else
            r_acc=0
            r_note="smtp-source failed: $(tail -1 "$work/source.out")"
        fi
        t1=$(now)
        ;;
    bench-*)
        local rflag=()
        [ "$tool" = bench-conn ] && rflag=(--reconnect)
        line=$(timeout 300 "$bench" --server "127.0.0.1:$port" --sessions "$sess" --messages "$count" \
            --size "$size" --pipelining "${rflag[@]}" --timeout 30000 --deadline 280 --quiet 2>"$work/bench.err" \
            | grep '^RESULT')
        t1=$(now)
        r_acc=$(kv ok "$line")
        r_acc=${r_acc:-0}
        r_p50=$(kv lat_p50_ms "$line")
        r_p99=$(kv lat_p99_ms "$line")
        [ "$(kv errors "$line")" = 0 ] && [ "$(kv quit_errors "$line")" = 0 ] \
            || r_note="errors=$(kv errors "$line") quit_errors=$(kv quit_errors "$line"): $(head -1 "$work/bench.err")"
        ;;
    esac
    after=$(sink_wait $((before + r_acc)))
    alive
    s1=$(cpu_ticks "$sink_pid")
    [ -n "$spid" ] && c1=$(cpu_ticks "$spid")
    r_ok=$((after - before))
    if [ "$r_ok" != "$count" ] || [ "$r_acc" != "$count" ]; then
        r_note="${r_note:+$r_note; }LOST: sent $count, client saw $r_acc accepted, sink counted $r_ok"
        lost=1
    fi
    if [ -n "$m0" ]; then
        # The full chain: every plugin ran on every message, none failed,
        # and every message grew by its signature on the way.
        m1=$(metrics_snap "${t_stats[$target]}")
        d=$(snap_delta "$m0" "$m1")
        local dv growth want
        read -r -a dv <<<"$d"
        growth=${t_growth[$target:${tool%-*}]:-0}
        want=$(calc "int($count * $growth - 320)")
        if ! { [ "${dv[0]}" = "$count" ] && [ "${dv[3]}" = "$count" ] && [ "${dv[4]}" = "$count" ] \
            && [ "${dv[5]}" = "$count" ] && [ "${dv[6]}" -ge "$count" ] && [ "${dv[7]}" = "$count" ] \
            && [ "${dv[8]}" = 0 ] && [ $((dv[2] - dv[1])) -ge "$want" ]; }; then
            r_note="${r_note:+$r_note; }CHAIN: accepted dkim_verify virus spam rewrite dkim_sign bad = ${dv[*]:0:1} ${dv[*]:3} for $count messages; grew $((dv[2] - dv[1])) bytes (want >= $want)"
            lost=1
        fi
    fi
    r_rate=$(calc "$r_acc / ($t1 - $t0)")
    r_sink=$((s1 - s0))
    r_sluice=$((c1 - c0))
    return 0
}

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {print NR ? v[int((NR + 1) / 2)] : 0}'; }

# Per-conn runs send half as many messages as session runs: a message costs
# them about twice the time (connection set-up), and the run stays short.
count_for() { # sessions size [full|conn] -> message count per repetition (scaled)
    local n
    case "$1x$2${3:-}" in
    1x4096) n=2000 ;;
    32x4096) n=10000 ;;
    1x65536) n=1000 ;;
    32x65536) n=2500 ;;
    1x4096conn) n=1000 ;;
    32x4096conn) n=5000 ;;
    1x65536conn) n=500 ;;
    32x65536conn) n=1250 ;;
    32x4096full) n=4000 ;;
    32x65536full) n=1500 ;;
    *) n=1000 ;;
    esac
    calc "int($n * $scale) > 0 ? int($n * $scale) : 1"
}

mode_of() { case "$1" in *-conn) echo per-conn ;; *) echo session ;; esac; }
client_of() { case "$1" in source-*) echo smtp-source ;; *) echo sluice-bench ;; esac; }

# One cell of the table: `repeat` rounds; in each, every target once, back
# to back, so that drift hits all alike (a "before" target goes first in
# every other round). Rates and latencies: median over the rounds; CPU per
# message: total ticks over all rounds / total messages the sink counted.
# Prints one row per target; appends one key=value line to $results.
cell() { # scenario tool sessions size count targets...
    local scen=$1 tool=$2 sess=$3 size=$4 count=$5 i t
    shift 5
    local targets=("$@") order
    declare -A rates p50s p99s sinkt slt oks
    local notes=""
    for ((i = 0; i < repeat; i++)); do
        order=()
        for t in "${targets[@]}"; do
            if [ $((i % 2)) = 1 ] && [ -n "${t_pid[${t}_before]:-}" ]; then
                order+=("${t}_before" "$t")
            elif [[ "$t" == *_before ]] && [ $((i % 2)) = 1 ]; then
                continue # already placed before its pair
            else
                order+=("$t")
            fi
        done
        for t in "${order[@]}"; do
            measure "$tool" "$t" "$sess" "$size" "$count"
            rates[$t]+=" $r_rate" p50s[$t]+=" $r_p50" p99s[$t]+=" $r_p99"
            sinkt[$t]=$((${sinkt[$t]:-0} + r_sink)) slt[$t]=$((${slt[$t]:-0} + r_sluice))
            oks[$t]=$((${oks[$t]:-0} + r_ok))
            [ -n "$r_note" ] && notes+="      ${t_label[$t]}: $r_note"$'\n'
        done
    done
    local line
    line="scenario=$scen sess=$sess size=$size mode=$(mode_of "$tool") tool=$(client_of "$tool") msgs=$count repeat=$repeat"
    local first=1 d_rate rate ratio cpu sinkcpu p50 p99 head
    d_rate=$(median <<<"${rates[direct]}")
    for t in "${targets[@]}"; do
        rate=$(median <<<"${rates[$t]}")
        ratio=$(calc "$d_rate > 0 ? $rate / $d_rate : 0")
        sinkcpu=$(calc "${sinkt[$t]} * 1000 / $hz / (${oks[$t]} > 0 ? ${oks[$t]} : 1)")
        cpu=-
        [ -n "${t_pid[$t]}" ] && cpu=$(printf '%.3f' "$(calc "${slt[$t]} * 1000 / $hz / (${oks[$t]} > 0 ? ${oks[$t]} : 1)")")
        p50=- p99=-
        if [ "$(client_of "$tool")" = sluice-bench ]; then
            p50=$(printf '%.3f' "$(median <<<"${p50s[$t]}")")
            p99=$(printf '%.3f' "$(median <<<"${p99s[$t]}")")
        fi
        head=""
        [ "$first" = 1 ] && head=$(printf '%-4s %-4s %-8s %-12s %2sx%-6s' "$sess" "$((size / 1024))K" \
            "$(mode_of "$tool")" "$(client_of "$tool")" "$repeat" "$count")
        first=0
        printf '%-40s | %-13s %9.0f %6.2f | %9s %9.3f | %9s %9s\n' "$head" "${t_label[$t]}" "$rate" \
            "$ratio" "$cpu" "$sinkcpu" "$p50" "$p99"
        line+=" ${t}_rate=$rate ${t}_ratio=$ratio ${t}_sluice_cpu_ms=$cpu ${t}_sink_cpu_ms=$sinkcpu ${t}_p50_ms=$p50 ${t}_p99_ms=$p99"
    done
    printf '%s' "$notes"
    # The keys of the earlier format (via = the empty chain).
    line+=" via_rate=$(kv empty_rate "$line") ratio=$(kv empty_ratio "$line")"
    line+=" sluice_cpu_ms=$(kv empty_sluice_cpu_ms "$line") sink_cpu_direct_ms=$(kv direct_sink_cpu_ms "$line")"
    line+=" sink_cpu_via_ms=$(kv empty_sink_cpu_ms "$line") p50_direct_ms=$(kv direct_p50_ms "$line")"
    line+=" p50_via_ms=$(kv empty_p50_ms "$line") p99_direct_ms=$(kv direct_p99_ms "$line")"
    line+=" p99_via_ms=$(kv empty_p99_ms "$line")"
    echo "$line" >>"$results"
}

table_head() {
    echo "msgs/s: median of $repeat rounds; x direct: msgs/s over the direct run's; CPU: ms per message"
    echo "(sluice's own; the sink's in the same runs); p50/p99: sluice-bench only, median of the rounds'"
    echo "percentiles: per-conn = connect() to the final 250, session = MAIL to the final 250 (pipelining)."
    printf '%-40s | %-13s %9s %6s | %9s %9s | %9s %9s\n' "sess size mode     client       rounds" \
        target msgs/s "x dir" "sluiceCPU" "sinkCPU" "p50 ms" "p99 ms"
    printf '%s\n' "$(printf '%.0s-' {1..118})"
}

lost=0
results=$work/results.txt
: >"$results"
via_targets=(direct empty)
[ -n "${t_pid[empty_before]:-}" ] && via_targets+=(empty_before)

if [ "$matrix" = 1 ]; then
    echo
    echo "== main matrix: direct vs sluice with an empty chain"
    table_head
    for size in 4096 65536; do
        for sess in 1 32; do
            for tool in source-conn source-sess bench-conn bench-sess; do
                kind=""
                [ "$(mode_of "$tool")" = per-conn ] && kind=conn
                cell matrix "$tool" "$sess" "$size" "$(count_for "$sess" "$size" "$kind")" "${via_targets[@]}"
            done
        done
    done
fi

if [ "$full_chain" = 1 ]; then
    echo
    echo "== full chain (dkim_verify, virus, spam, rewrite, dkim_sign), one connection per message"
    full_targets=("${via_targets[@]}" full)
    [ -n "${t_pid[full_before]:-}" ] && full_targets+=(full_before)
    table_head
    for size in 4096 65536; do
        for tool in source-conn bench-conn; do
            cell full "$tool" 32 "$size" "$(count_for 32 "$size" full)" "${full_targets[@]}"
        done
    done
    echo
    for t in empty empty_before full full_before; do
        [ -n "${t_pid[$t]:-}" ] || continue
        printf '   %-13s RSS %6s KiB now, peak (VmHWM) %6s KiB\n' "${t_label[$t]}" \
            "$(rss_kib "${t_pid[$t]}")" "$(hwm_kib "${t_pid[$t]}")"
        echo "rss target=$t rss_kib=$(rss_kib "${t_pid[$t]}") hwm_kib=$(hwm_kib "${t_pid[$t]}")" >>"$results"
    done
fi
for t in "${!idle_kib[@]}"; do
    echo "idle target=$t kib_per_conn=${idle_kib[$t]} connections=$idle_n" >>"$results"
done
[ -n "$save" ] && cp "$results" "$save"

# --- targets ---------------------------------------------------------------
row() { grep "^scenario=${5:-matrix} sess=$1 size=$2 mode=$3 tool=$4 " "$results"; }
verdict() { if [ "$(calc "$1")" = 1 ]; then echo PASS; else echo MISS; fi; }
fmt() { if [ -z "$1" ] || [ "$1" = - ]; then echo "-"; else printf "%.${2:-2}f" "$1"; fi; }
echo
echo "== targets"
if [ "$matrix" = 1 ]; then
    r=$(row 32 4096 per-conn smtp-source)
    rs=$(row 32 4096 session smtp-source)
    rb=$(row 32 4096 session sluice-bench)
    for t in empty empty_before; do
        [ -n "$(kv "${t}_rate" "$r")" ] || continue
        ratio=$(kv "${t}_ratio" "$r")
        echo "  $(verdict "$ratio >= 0.60")  ${t_label[$t]}: 32 sessions 4 KiB, smtp-source per-conn: $(fmt "$ratio") x direct (target >= 0.60)" \
            "(session: smtp-source $(fmt "$(kv "${t}_ratio" "$rs")"), sluice-bench $(fmt "$(kv "${t}_ratio" "$rb")"))"
        cpu=$(kv "${t}_sluice_cpu_ms" "$r")
        # smtp-sink's own cost for this traffic is its CPU per message when
        # it serves the clients' connections itself (direct); behind sluice
        # it does less (sluice reuses its upstream connections), shown too.
        sinkcpu=$(kv direct_sink_cpu_ms "$r")
        if [ "$cpu" = - ]; then
            echo "  n/a   sluice CPU per message (no sluice)"
        else
            echo "  $(verdict "$cpu <= $sinkcpu")  ${t_label[$t]}: sluice CPU/msg $(fmt "$cpu" 3) ms <= smtp-sink CPU/msg $(fmt "$sinkcpu" 3) ms serving the same clients directly" \
                "(32 sessions 4 KiB, per-conn, same runs; the sink behind sluice: $(fmt "$(kv "${t}_sink_cpu_ms" "$r")" 3) ms)"
        fi
        r1=$(row 1 4096 session sluice-bench)
        p50d=$(kv direct_p50_ms "$r1")
        p50v=$(kv "${t}_p50_ms" "$r1")
        echo "  $(verdict "$p50v <= 2 * $p50d")  ${t_label[$t]}: p50 latency at 1 session 4 KiB (session): $p50v ms vs $p50d ms direct (target <= 2x = $(calc "2 * $p50d") ms)"
        r1=$(row 1 4096 per-conn sluice-bench)
        echo "        (per-conn: $(kv "${t}_p50_ms" "$r1") ms vs $(kv direct_p50_ms "$r1") ms;" \
            "64 KiB session: $(kv "${t}_p50_ms" "$(row 1 65536 session sluice-bench)") ms vs $(kv direct_p50_ms "$(row 1 65536 session sluice-bench)") ms)"
    done
fi
for t in empty empty_before; do
    [ -n "${t_pid[$t]:-}" ] || continue
    if [ -n "${idle_kib[$t]:-}" ]; then
        echo "  $(verdict "${idle_kib[$t]} <= 16")  ${t_label[$t]}: RSS per idle connection $(fmt "${idle_kib[$t]}" 1) KiB (target <= 16 KiB; $idle_n connections)"
    else
        echo "  n/a   ${t_label[$t]}: RSS per idle connection (no connection opened)"
    fi
done
if [ "$full_chain" = 1 ]; then
    for t in full full_before; do
        [ -n "${t_pid[$t]:-}" ] || continue
        for size in 4096 65536; do
            want=1500
            [ "$size" = 65536 ] && want=600
            r=$(row 32 "$size" per-conn smtp-source full)
            rb=$(row 32 "$size" per-conn sluice-bench full)
            rate=$(kv "${t}_rate" "$r")
            echo "  $(verdict "$rate >= $want")  ${t_label[$t]}: 32 sessions $((size / 1024)) KiB, smtp-source per-conn: $(fmt "$rate" 0) msgs/s (target >= $want);" \
                "CPU/msg sluice $(fmt "$(kv "${t}_sluice_cpu_ms" "$r")" 3) ms, sink $(fmt "$(kv "${t}_sink_cpu_ms" "$r")" 3) ms;" \
                "sluice-bench per-conn $(fmt "$(kv "${t}_rate" "$rb")" 0) msgs/s, p50 $(kv "${t}_p50_ms" "$rb") ms, p99 $(kv "${t}_p99_ms" "$rb") ms"
        done
    done
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
    start_sluice sluice-chain "$sluice" "$chain_port" "$sink_port" -c "$chain" --stats-listen "127.0.0.1:$(free_port)"
    ab_compare "empty chain" "$via_port" "" "with chain " "$chain_port" ""
    echo "  $(verdict "$ab_cost <= 3") the chain costs <= 3 % throughput (issue 3's 5 no-op plugins)"
fi

echo
if [ "$lost" = 1 ]; then
    echo "!! the sink did not count every message sent, or the full chain skipped work: see the notes above"
    keep=1 # for the logs
    exit 1
fi
if [ "$full_chain" = 1 ]; then
    echo "every message sent was counted by the sink; through the full chain every plugin ran on every message and each was signed"
else
    echo "every message sent was counted by the sink"
fi
exit 0
