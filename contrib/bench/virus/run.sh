#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# Virus plugin benchmark. Prints:
#  1. scans/s in process (libclamav) vs through clamd, for 4 KiB and 50 KiB
#     mails with a zipped attachment, clean cache disabled (virus_bench);
#  1b. CPU per scan of plain-text mails (4 KiB, 64 KiB) and of one with a
#     small attachment, libclamav's scratch directory on tmpfs (the
#     plugin's default) vs on disk ($TMPDIR, the old default);
#  2. proxy throughput (sluice-bench) with the virus plugin in the chain vs
#     an empty chain, in front of Postfix's smtp-sink.
# The signature database is generated here (EICAR .ndb + clam.exe .hdb).
# Usage: contrib/bench/virus/run.sh [BUILD_DIR] (default: build)
# Env: SECONDS_PER_RUN (default 5), THREADS (default 2), CONNS (default 8),
#      MSGS (messages per proxy run, default 3000), COUNT (scans per
#      CPU-per-scan figure, default 2000).
set -eu
BUILD=$(cd "${1:-build}" && pwd)
SECS=${SECONDS_PER_RUN:-5}
THREADS=${THREADS:-2}
CONNS=${CONNS:-8}
MSGS=${MSGS:-3000}
BENCH="$BUILD/plugins/virus/virus_bench"
SB="$BUILD/contrib/bench/sluice-bench"
SLUICE="$BUILD/proxy/sluice"
for f in "$BENCH" "$SB" "$SLUICE" "$BUILD/plugins/virus.so"; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "missing $f (build it first)" >&2; exit 1; }
done
W=$(mktemp -d /tmp/sluice-virus-bench.XXXXXX)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT INT TERM

mkdir -p "$W/db" "$W/tmp" && chmod 700 "$W/tmp"
/usr/bin/python3 - "$W/db" <<'PY'
import sys
e = ("X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + "EICAR-STANDARD-" + "ANTIVIRUS-TEST-" + "FILE!$H+H*").encode()
open(sys.argv[1] + "/t.ndb", "w").write("Test.EICAR.NDB:0:*:%s\n" % e.hex())
open(sys.argv[1] + "/t.hdb", "w").write("aa15bcf478d165efd2065190eb473bcb:544:ClamAV-Test-File\n")
PY

free_port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { i=0; while ! /usr/bin/python3 -c "import socket;socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; do i=$((i+1)); [ $i -lt 100 ] || return 1; sleep 0.1; done; }

# ---- 1. scanner throughput --------------------------------------------------
CLAMD_ARG=""
if [ -x /usr/sbin/clamd ]; then
    cat > "$W/clamd.conf" <<EOF2
Foreground yes
DatabaseDirectory $W/db
LocalSocket $W/clamd.sock
LogFile $W/clamd.log
PidFile $W/clamd.pid
TemporaryDirectory $W/tmp
StreamMaxLength 25M
MaxThreads 4
# Same footing as the in-process run: no clean-result cache.
DisableCache yes
EOF2
    /usr/sbin/clamd -c "$W/clamd.conf" >/dev/null 2>&1 &
    PIDS="$PIDS $!"
    i=0; while [ ! -S "$W/clamd.sock" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
    [ -S "$W/clamd.sock" ] && CLAMD_ARG="--clamd unix:$W/clamd.sock"
fi
echo "== scans/s, $THREADS threads, ${SECS}s each, cache disabled, mail with a zipped attachment"
for size in 4096 51200; do
    for kind in clean infected; do
        extra=""; [ $kind = infected ] && extra="--infected"
        echo "-- size=$size $kind"
        # shellcheck disable=SC2086
        "$BENCH" --db "$W/db" $CLAMD_ARG --seconds "$SECS" --threads "$THREADS" --size $size $extra
    done
done

echo "== CPU per scan (1 thread, ${COUNT:-2000} scans, cache disabled), scratch dir tmpfs vs disk"
DISKTMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-virus-bench-disk.XXXXXX")
for kind in text:4096 text:65536 attach:4096; do
    for where in default "$DISKTMP"; do
        targ=""; [ "$where" = default ] || targ="--tmpdir $where"
        printf '%s %s tmpdir=%s: ' "${kind%%:*}" "${kind##*:}" "$where"
        # shellcheck disable=SC2086
        "$BENCH" --db "$W/db" --kind "${kind%%:*}" --size "${kind##*:}" --count "${COUNT:-2000}" \
            $targ 2>/dev/null
    done
done
rmdir "$DISKTMP"

# ---- 2. proxy throughput ----------------------------------------------------
if ! command -v smtp-sink >/dev/null 2>&1 && [ ! -x /usr/sbin/smtp-sink ]; then
    echo "smtp-sink not found: skipping the proxy figures"; exit 0
fi
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
SPORT=$(free_port)
"$SINK" -c -u nobody -m 4096 "127.0.0.1:$SPORT" 4096 >/dev/null 2>&1 &
PIDS="$PIDS $!"
wait_port "$SPORT"
run_proxy() { # $1 = label, $2 = chain
    PPORT=$(free_port)
    cat > "$W/sluice-$1.conf" <<EOF2
[server]
listen = 127.0.0.1:$PPORT
hostname = bench.test
spool_dir = $W
max_connections = 4096
max_connections_per_ip = 4096
[upstream]
servers = 127.0.0.1:$SPORT
[stats]
listen = no
[chain]
plugins = $2
[plugin virus]
database = $W/db
cache = no
EOF2
    "$SLUICE" -c "$W/sluice-$1.conf" >"$W/sluice-$1.log" 2>&1 &
    SP=$!
    PIDS="$PIDS $SP"
    wait_port "$PPORT"
    echo "-- $1"
    for size in 4096 51200; do
        printf 'size=%s ' "$size"
        "$SB" --server "127.0.0.1:$PPORT" --sessions "$CONNS" --messages "$MSGS" --size "$size" \
            --pipelining --quiet || echo "(some messages were not accepted)"
    done
    kill "$SP"; wait "$SP" 2>/dev/null || true
}
echo "== proxy throughput (sluice-bench, $CONNS sessions, $MSGS messages, clean mail)"
run_proxy empty ""
run_proxy virus "virus"
