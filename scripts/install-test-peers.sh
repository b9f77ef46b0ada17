#!/usr/bin/env bash
# Install and start the real peers the test suite needs on this (Debian) machine:
#   - Dovecot (IMAP, POP3, LMTP) binaries; the tests start their own instances,
#   - PostgreSQL, running on 127.0.0.1:5432 with trust authentication for loopback.
# Idempotent: run it before every test run; it only acts on what is missing.
# Runs as root (CI does). Everything listens on 127.0.0.1 only.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-peers: must run as root (apt-get, pg_ctlcluster)" >&2
  exit 1
fi

log() { echo "install-test-peers: $*"; }

# Debian starts a freshly installed service unless policy-rc.d says no. The tests start
# their own Dovecot on free ports, so the system service is not needed: deny starts
# during our install (exit 101) and restore whatever policy was there before.
policy=/usr/sbin/policy-rc.d
policy_backup=""
deny_service_starts() {
  if [ -e "$policy" ]; then
    policy_backup="$(mktemp)"
    cp -p "$policy" "$policy_backup"
  fi
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
}
restore_service_policy() {
  if [ -n "$policy_backup" ]; then
    mv -f "$policy_backup" "$policy"
  else
    rm -f "$policy"
  fi
}

missing_packages() { # pkg... -> the ones not installed
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

apt_install() { # pkg... ; apt-get update only when the lists are missing or stale
  local log_file
  log_file="$(mktemp)"
  if ! apt-get install -y -q --no-install-recommends "$@" >"$log_file" 2>&1; then
    if grep -qE "Unable to locate package|has no installation candidate|Failed to fetch|404" "$log_file"; then
      log "package lists are missing or stale; running apt-get update"
      apt-get update -q >/dev/null
      apt-get install -y -q --no-install-recommends "$@"
    else
      cat "$log_file" >&2
      rm -f "$log_file"
      return 1
    fi
  fi
  rm -f "$log_file"
}

install_missing() { # pkg...
  local missing
  missing="$(missing_packages "$@" | tr '\n' ' ')"
  if [ -z "${missing// /}" ]; then
    log "already installed: $*"
    return 0
  fi
  log "installing: $missing"
  deny_service_starts
  trap restore_service_policy EXIT
  # shellcheck disable=SC2086  # word splitting of the package list is intended
  apt_install $missing
  restore_service_policy
  trap - EXIT
}

# -- Python virtual environments (Debian splits venv/ensurepip into python3-venv) -----------
if ! "${PYTHON:-python3}" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  install_missing python3-venv
fi

# -- Dovecot ------------------------------------------------------------------------------
install_missing dovecot-imapd dovecot-pop3d dovecot-lmtpd
if [ ! -x /usr/sbin/dovecot ] || [ ! -x /usr/bin/doveadm ]; then
  echo "install-test-peers: /usr/sbin/dovecot or /usr/bin/doveadm missing after install" >&2
  exit 1
fi
log "dovecot $(/usr/sbin/dovecot --version)"

# -- PostgreSQL ---------------------------------------------------------------------------
pg_up() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; }

if pg_up; then
  log "postgresql is accepting connections on 127.0.0.1:5432"
  exit 0
fi

install_missing postgresql

version="$(pg_lsclusters -h 2>/dev/null | awk '$2 == "main" { print $1; exit }')"
if [ -z "$version" ]; then
  version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
  log "creating cluster $version/main"
  pg_createcluster "$version" main >/dev/null
fi

hba="/etc/postgresql/$version/main/pg_hba.conf"
if ! grep -qE '^host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
  log "trusting 127.0.0.1 in $hba"
  # First matching line wins: put ours first.
  sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  hba_changed=1
else
  hba_changed=0
fi

status="$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" { print $4 }')"
if [ "$status" != "online" ]; then
  log "starting cluster $version/main"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
elif [ "$hba_changed" = 1 ]; then
  pg_ctlcluster --skip-systemctl-redirect "$version" main reload
fi

for _ in $(seq 1 100); do
  pg_up && break
  sleep 0.1
done
if ! pg_up; then
  echo "install-test-peers: PostgreSQL $version is not accepting connections on 127.0.0.1:5432" >&2
  exit 1
fi
log "postgresql $version is accepting connections on 127.0.0.1:5432"
