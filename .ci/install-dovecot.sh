#!/usr/bin/env bash
# Install the Dovecot IMAP server binaries used by the ingest IMAP poller tests.
#
# Idempotent: does nothing when dovecot is already installed. The tests start their own
# throwaway Dovecot on a free loopback port, so the distribution's service must never run
# (it would bind 143/993): we forbid service starts during the install with a temporary
# policy-rc.d, then stop/disable the system service in case something started it anyway.
set -euo pipefail

if command -v dovecot >/dev/null 2>&1 && command -v doveadm >/dev/null 2>&1; then
    echo "install-dovecot: dovecot already installed: $(dovecot --version)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive

# Forbid service starts during the install (invoke-rc.d honours policy-rc.d exit code 101).
POLICY=/usr/sbin/policy-rc.d
POLICY_BACKUP=""
if [ -e "$POLICY" ]; then
    POLICY_BACKUP="$(mktemp)"
    $SUDO cp -p "$POLICY" "$POLICY_BACKUP"
fi
restore_policy() {
    if [ -n "$POLICY_BACKUP" ]; then
        $SUDO cp -p "$POLICY_BACKUP" "$POLICY"
        rm -f "$POLICY_BACKUP"
    else
        $SUDO rm -f "$POLICY"
    fi
}
trap restore_policy EXIT
printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$POLICY" >/dev/null
$SUDO chmod 755 "$POLICY"

# Refresh the package lists only when the candidate is unknown (no lists yet, or stale).
if ! apt-cache show dovecot-imapd >/dev/null 2>&1; then
    $SUDO apt-get update -q
fi
install_packages() {
    $SUDO apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        dovecot-imapd dovecot-core openssl
}
# Stale lists can name versions the mirror no longer has: refresh once and retry.
install_packages || { $SUDO apt-get update -q && install_packages; }

# Belt and braces: the system instance must not hold 143/993 while the tests run.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl stop dovecot.service dovecot.socket >/dev/null 2>&1 || true
    $SUDO systemctl disable dovecot.service dovecot.socket >/dev/null 2>&1 || true
elif [ -x /etc/init.d/dovecot ]; then
    $SUDO /etc/init.d/dovecot stop >/dev/null 2>&1 || true
fi

echo "install-dovecot: installed $(dovecot --version)"
