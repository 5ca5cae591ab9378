#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# fresh-check.sh: prove one of the README's Quick-start commands on a truly
# fresh Debian 12 root. Creates (once) a minimal bookworm root with mmdebstrap
# (or debootstrap), copies it to a throw-away root for this run, clones the
# repository into /root/sluice there, and runs the command exactly as the
# README writes it, as root, in a chroot inside private mount, PID and UTS
# namespaces (so every mount and every daemon the command leaves behind goes
# away with it). Prints the result and the duration; exits with the
# command's status. Run as root on a Debian (or Ubuntu) host:
#
#   bash contrib/scripts/fresh-check.sh demo      # bash contrib/scripts/demo.sh
#   bash contrib/scripts/fresh-check.sh test      # bash contrib/scripts/test.sh
#
# Options (before the command):
#   --dir DIR        work directory (default /var/tmp/sluice-fresh); holds
#                    pristine/ (the bootstrapped root, made once and reused),
#                    run-CMD/ (this run's copy) and CMD.log
#   --repo PATH      git repository to clone (default: this script's own);
#                    the committed HEAD is cloned, not the work tree
#   --ref REF        branch or commit to check out (default: HEAD of --repo)
#   --mirror URL     Debian mirror (default: the host's deb.debian.org-style
#                    mirror from /etc/apt/sources.list*, else
#                    http://deb.debian.org/debian)
#   --apt-cache DIR  keep downloaded .debs in DIR between runs (bind-mounted
#                    at /var/cache/apt/archives; package lists still start
#                    empty, so install-deps.sh still runs apt-get update)
#   --rebootstrap    make pristine/ again even if it exists
#   --keep           keep run-CMD/ afterwards (to look around in it)
# Env passed to the command: JOBS, SKIP_ASAN, SKIP_TSAN (only when set).
#
# What makes the chroot a "fresh machine": the root is mmdebstrap's minbase
# variant (essential + apt: no Python, no compiler, no locales, no mail
# system); /etc/hosts and /etc/hostname are written the way Debian's
# installer writes them (127.0.0.1 localhost, 127.0.1.1 the host name); the
# host's /etc/resolv.conf is copied for apt; the root is bind-mounted on
# itself (a mount point, as "/" is on a machine) and /proc, /sys, /dev,
# /dev/pts, /dev/shm and a tmpfs /tmp are mounted in it; the command starts
# from an empty environment (HOME=/root, the default root PATH, no LANG)
# like a root login.
set -euo pipefail

DIR=/var/tmp/sluice-fresh
REPO=$(cd "$(dirname "$0")/../.." && pwd)
REF=""
MIRROR=""
APT_CACHE=""
REBOOT=0
KEEP=0
SUITE=bookworm
FRESH_HOSTNAME=sluice-fresh

usage() { sed -n '3,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-2}"; }

while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --repo) REPO=$2; shift 2 ;;
    --ref) REF=$2; shift 2 ;;
    --mirror) MIRROR=$2; shift 2 ;;
    --apt-cache) APT_CACHE=$2; shift 2 ;;
    --rebootstrap) REBOOT=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage 0 ;;
    -*) echo "fresh-check.sh: unknown option $1" >&2; usage ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || usage
case $1 in
  demo) CMD="bash contrib/scripts/demo.sh" ;;
  test) CMD="bash contrib/scripts/test.sh" ;;
  *) echo "fresh-check.sh: command must be demo or test" >&2; usage ;;
esac
WHAT=$1

if [ "$(id -u)" -ne 0 ]; then
  echo "fresh-check.sh: run as root (chroot, mounts, namespaces)" >&2
  exit 1
fi

log() { printf 'fresh-check: %s\n' "$*"; }
t0=$(date +%s)

# The host's Debian mirror (deb822 or one-line format), else the CDN.
host_mirror() {
  local m
  m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\/\{0,1\}\)$/\1/p' | head -n 1)
  [ -n "$m" ] || m=$(cat /etc/apt/sources.list 2>/dev/null \
        | sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\{0,1\}\([^[:space:]]*\/debian\/\{0,1\}\)[[:space:]].*/\2/p' \
        | head -n 1)
  echo "${m:-http://deb.debian.org/debian}"
}
[ -n "$MIRROR" ] || MIRROR=$(host_mirror)
MIRROR=${MIRROR%/}
SECURITY=${MIRROR%/debian}/debian-security

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
case "$DIR/" in
  "$REPO"/*) echo "fresh-check.sh: --dir must be outside the repository" >&2; exit 1 ;;
esac
PRISTINE=$DIR/pristine
RUN=$DIR/run-$WHAT
LOG=$DIR/$WHAT.log

# 1. The pristine root, made once (a failed bootstrap leaves no pristine/).
if [ "$REBOOT" = 1 ] || [ ! -e "$PRISTINE/.fresh-check-done" ]; then
  rm -rf "$PRISTINE" "$PRISTINE.tmp"
  log "bootstrapping a minimal $SUITE root from $MIRROR into $PRISTINE"
  tb=$(date +%s)
  if ! command -v mmdebstrap >/dev/null && ! command -v debootstrap >/dev/null; then
    log "installing mmdebstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q mmdebstrap >/dev/null \
      || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
  fi
  if command -v mmdebstrap >/dev/null; then
    mmdebstrap --variant=minbase --mode=root "$SUITE" "$PRISTINE.tmp" \
      "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
      "deb $SECURITY $SUITE-security main"
  else
    debootstrap --variant=minbase "$SUITE" "$PRISTINE.tmp" "$MIRROR"
    printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
      "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SECURITY" "$SUITE" \
      > "$PRISTINE.tmp/etc/apt/sources.list"
    rm -rf "$PRISTINE.tmp"/var/lib/apt/lists/*_Packages* "$PRISTINE.tmp"/var/cache/apt/archives/*.deb
  fi
  # What Debian's installer writes and a bootstrap does not.
  echo "$FRESH_HOSTNAME" > "$PRISTINE.tmp/etc/hostname"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n\n::1\tlocalhost ip6-localhost ip6-loopback\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n' \
    "$FRESH_HOSTNAME" > "$PRISTINE.tmp/etc/hosts"
  touch "$PRISTINE.tmp/.fresh-check-done"
  mv "$PRISTINE.tmp" "$PRISTINE"
  log "bootstrap took $(( $(date +%s) - tb )) s"
fi

# 2. This run's root: a copy of the pristine one and a clean clone.
if [ -d "$RUN" ]; then
  # A run killed hard may leave nothing mounted (namespaces), but check.
  if grep -q " $RUN/" /proc/self/mounts; then
    echo "fresh-check.sh: something is still mounted under $RUN" >&2; exit 1
  fi
  rm -rf "$RUN"
fi
log "copying the pristine root to $RUN"
cp -a "$PRISTINE" "$RUN"
rm -f "$RUN/.fresh-check-done"
cp -L /etc/resolv.conf "$RUN/etc/resolv.conf"
log "cloning $REPO${REF:+ ($REF)} into /root/sluice"
git clone -q --no-hardlinks "$REPO" "$RUN/root/sluice"
if [ -n "$REF" ]; then
  git -C "$RUN/root/sluice" checkout -q "$REF"
fi
log "commit: $(git -C "$RUN/root/sluice" log -1 --format='%h %s' | cut -c1-100)"
if [ -n "$APT_CACHE" ]; then
  mkdir -p "$APT_CACHE/partial"
  APT_CACHE=$(cd "$APT_CACHE" && pwd)
fi

# 3. Run it: private mount, PID and UTS namespaces; the mounts and every
# process started inside disappear when the command ends.
ENVV=(HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
      "TERM=${TERM:-dumb}" SHELL=/bin/bash USER=root LOGNAME=root)
for v in JOBS SKIP_ASAN SKIP_TSAN; do
  if [ -n "${!v:-}" ]; then ENVV+=("$v=${!v}"); fi
done
log "running, as root in the fresh root: cd /root/sluice && $CMD"
log "output: $LOG"
tr=$(date +%s)
set +e
unshare --mount --propagation private --pid --uts --fork \
  env RUN="$RUN" APT_CACHE="$APT_CACHE" FRESH_HOSTNAME="$FRESH_HOSTNAME" CMD="$CMD" \
  bash -c '
    set -e
    hostname "$FRESH_HOSTNAME"
    # "/" is a mount point on a real machine; in a plain chroot it is not,
    # and "unshare --mount" inside (a DKIM test does that) fails with EINVAL.
    mount --bind "$RUN" "$RUN"
    mount -t proc proc "$RUN/proc"
    mount -t sysfs sysfs "$RUN/sys"
    mount --rbind /dev "$RUN/dev"          # with /dev/pts
    mount --make-rslave "$RUN/dev"
    mount -t tmpfs -o mode=1777 shm "$RUN/dev/shm"
    mount -t tmpfs -o mode=1777 tmpfs "$RUN/tmp"
    if [ -n "$APT_CACHE" ]; then
      mount --bind "$APT_CACHE" "$RUN/var/cache/apt/archives"
    fi
    shift
    exec chroot "$RUN" /usr/bin/env -i "$@" /bin/bash -c "cd /root/sluice && $CMD" </dev/null
  ' fresh-check "${ENVV[@]}" 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e
dur=$(( $(date +%s) - tr ))

if [ "$KEEP" != 1 ]; then
  rm -rf "$RUN"
fi
log "command: cd /root/sluice && $CMD"
log "result: $( [ "$rc" -eq 0 ] && echo PASSED || echo "FAILED (exit $rc)" ) in ${dur} s" \
    "($(( $(date +%s) - t0 )) s in all); log: $LOG"
exit "$rc"
