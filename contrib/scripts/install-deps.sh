#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# install-deps.sh: install (as root, on Debian 12) every package sluice is
# built, tested and demonstrated with. Idempotent: packages already present
# are skipped, and the package lists are only refreshed when something is
# missing. This is the one place the list lives.
set -euo pipefail

PACKAGES=(
  # build: compiler, CMake, pkg-config; git for test.sh's format check of
  # changed lines (without it the check skips itself: "no history")
  build-essential cmake pkg-config clang libclang-rt-14-dev clang-format git
  # libraries the daemon and plugins link
  libuv1-dev libssl-dev libinih-dev libpcre2-dev libgmime-3.0-dev
  libmicrohttpd-dev libclamav-dev libopendkim-dev libsqlite3-dev libc-ares-dev
  libpsl-dev publicsuffix libspf2-dev libopendmarc-dev
  # the shared state's Redis backend ([state] backend = redis): hiredis with
  # its libuv adapter
  libhiredis-dev
  # the spam plugin's prefilter: optional at build time, and Debian has it
  # for amd64 only (elsewhere the word below is empty)
  $([ "$(dpkg --print-architecture)" = amd64 ] && echo libhyperscan-dev)
  # milter codec: its constants are checked against libmilter's headers
  libmilter-dev
  # unit tests
  libcmocka-dev
  # integration tests and demo: Python, a real MTA, real SMTP client, certs
  python3 python3-pytest postfix swaks libnet-ssleay-perl openssl curl iproute2 procps util-linux
  # plugin tests: antivirus, DKIM, spam scoring
  clamav-daemon clamav-testfiles python3-dkim python3-nacl opendkim-tools rspamd
  # milter client tests: real milters (rspamd above) and tests/integration/milters/testmilter
  libmilter-dev opendkim clamav-milter
  # stats tests: Prometheus' promtool, headless dashboard test
  prometheus chromium
  # SMTP AUTH tests: a private Dovecot checks passwords (test_dvauth.py);
  # the package's system service is never configured or started
  dovecot-core
  # PROXY protocol tests: HAProxy in front of sluice (test_front_proxy.py);
  # private instances on generated configs, never the system service
  haproxy
  # shared state tests: a private redis-server per test on a loopback port
  # (the package's system service is never used)
  redis-server
  # SRS interoperability tests: the rewrite plugin's SRS addresses against
  # postsrsd's (a private instance on a loopback port)
  postsrsd
  # man pages: scdoc sources rendered at build time, checked with man -l
  scdoc man-db groff-base
  # systemd integration: sd_notify readiness and watchdog, journald fields
  # (libsystemd); systemd-analyze verify/security checks the unit in tests
  libsystemd-dev systemd
  # Exim guide test (test_exim.py): the libraries exim4-daemon-light links
  # (its Depends that are libraries). The package itself conflicts with
  # postfix, so install_exim below only extracts it.
  libc6 libcrypt1 libdb5.3 libgnutls-dane0 libgnutls30 libidn12 libidn2-0 libnsl2
  libpcre2-8-0
)

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps.sh: run as root (bash $0)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# Exim for test_exim.py, without installing it: exim4-daemon-light and
# postfix both provide mail-transport-agent, so `apt-get install` would
# remove Postfix. The package is downloaded and extracted into EXIM_ROOT
# (again only when the candidate version changes), and the Debian-exim user
# and group its binary is built for (EXIM_USER=ref:Debian-exim, looked up
# before any configuration is read) are made as exim4-base's postinst makes
# them, so that a real Exim installed later takes them over. Nothing is
# configured or started; the tests run private daemons with `-C`.
EXIM_ROOT=/opt/sluice-test/exim4
install_exim() {
  if ! getent group Debian-exim >/dev/null; then
    groupadd --system Debian-exim
  fi
  if ! getent passwd Debian-exim >/dev/null; then
    useradd --system --gid Debian-exim --no-create-home --home-dir /var/spool/exim4 \
      --shell /usr/sbin/nologin --comment "Exim (sluice tests)" Debian-exim
  fi
  local want have=""
  want=$(apt-cache show --no-all-versions exim4-daemon-light 2>/dev/null |
         sed -n '1,/^$/s/^Version: //p') || want=""
  [ -f "$EXIM_ROOT/.version" ] && have=$(cat "$EXIM_ROOT/.version")
  if [ -x "$EXIM_ROOT/usr/sbin/exim4" ] && { [ -z "$want" ] || [ "$want" = "$have" ]; }; then
    echo "install-deps.sh: exim4-daemon-light $have already in $EXIM_ROOT"
    return 0
  fi
  local tmp deb
  tmp=$(mktemp -d)
  # apt-get download runs as _apt when it may write the directory.
  chown _apt "$tmp" 2>/dev/null || true
  if ! (cd "$tmp" && apt-get download -q exim4-daemon-light); then
    apt-get update -q
    (cd "$tmp" && apt-get download -q exim4-daemon-light) || { rm -rf "$tmp"; return 1; }
  fi
  deb=$(ls "$tmp"/exim4-daemon-light_*.deb)
  rm -rf "$EXIM_ROOT"
  mkdir -p "$EXIM_ROOT"
  dpkg-deb -x "$deb" "$EXIM_ROOT"
  dpkg-deb -f "$deb" Version >"$EXIM_ROOT/.version"
  rm -rf "$tmp"
  if ldd "$EXIM_ROOT/usr/sbin/exim4" | grep -q "not found"; then
    echo "install-deps.sh: $EXIM_ROOT/usr/sbin/exim4 misses libraries:" >&2
    ldd "$EXIM_ROOT/usr/sbin/exim4" | grep "not found" >&2
    return 1
  fi
  echo "install-deps.sh: exim4-daemon-light $(cat "$EXIM_ROOT/.version") extracted into $EXIM_ROOT"
}

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps.sh: all ${#PACKAGES[@]} packages already installed"
  install_exim
  exit 0
fi

echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Postfix: install the binaries only. sluice's tests and demo run private
# instances; no system mail service is configured or started.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string sluice-test.invalid" | debconf-set-selections

apt_install() {
  apt-get install -y -q --no-install-recommends "${missing[@]}"
}
# Refresh the lists only when they are absent or the install cannot find
# something with the current ones.
if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || ! apt_install; then
  apt-get update -q
  apt_install
fi
install_exim
echo "install-deps.sh: done"
