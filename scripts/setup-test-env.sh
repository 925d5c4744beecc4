#!/usr/bin/env bash
# Installs the real third-party services and Python clients that Aerie's tests use.
#
# Idempotent: run it as often as you like. On a fresh Debian 12 machine (as root) it
#   1. installs the Debian packages below when any is missing (apt-get update only then),
#      without letting their maintainer scripts start system services;
#   2. makes sure none of those services is left running on its default port and that
#      none starts at boot (tests start their own copies on picked loopback ports);
#   3. creates the Python virtual environment `.venv` in the repository root with the
#      real clients the end-to-end tests drive (only if missing or incomplete).
#
# Usage: scripts/setup-test-env.sh        (from anywhere; paths are relative to the repo)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"

DEBIAN_PACKAGES=(memcached zookeeper prometheus prometheus-node-exporter prometheus-alertmanager)
# System services these packages may register (init.d scripts or systemd units).
SERVICES=(memcached zookeeper prometheus prometheus-node-exporter prometheus-alertmanager)
PYTHON_PACKAGES=(prometheus_client opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc py_zipkin)
# The module each Python package provides, to tell whether the venv is complete.
PYTHON_MODULES=(prometheus_client opentelemetry.sdk opentelemetry.exporter.otlp.proto.grpc py_zipkin)

say() { printf 'setup-test-env: %s\n' "$*"; }

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        say "need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

# ---------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$pkg")
    fi
done

POLICY=/usr/sbin/policy-rc.d
POLICY_BACKUP="$POLICY.aerie-setup-backup"
restore_policy() {
    if [[ -e "$POLICY_BACKUP" ]]; then
        as_root mv -f "$POLICY_BACKUP" "$POLICY"
    elif [[ -e "$POLICY.aerie-setup-ours" ]]; then
        as_root rm -f "$POLICY" "$POLICY.aerie-setup-ours"
    fi
}

if ((${#missing[@]} > 0)); then
    say "installing Debian packages: ${missing[*]}"
    # policy-rc.d exiting 101 tells invoke-rc.d / deb-systemd-invoke not to start
    # services from maintainer scripts. Keep any existing policy and put it back after.
    if [[ -e "$POLICY_BACKUP" || -e "$POLICY.aerie-setup-ours" ]]; then
        : # an interrupted earlier run left its marker: keep what it saved
    elif [[ -e "$POLICY" ]]; then
        as_root cp -p "$POLICY" "$POLICY_BACKUP"
    else
        as_root touch "$POLICY.aerie-setup-ours"
    fi
    trap restore_policy EXIT
    printf '#!/bin/sh\n# temporary: scripts/setup-test-env.sh is installing packages\nexit 101\n' |
        as_root tee "$POLICY" >/dev/null
    as_root chmod 755 "$POLICY"

    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"

    restore_policy
    trap - EXIT
    say "installed: ${missing[*]}"
else
    say "Debian packages already installed: ${DEBIAN_PACKAGES[*]}"
fi

# ---------------------------------------------------------------------------
# 2. No system copies of the services: stopped now and not started at boot
# ---------------------------------------------------------------------------
systemd_running=false
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
    systemd_running=true
fi

for svc in "${SERVICES[@]}"; do
    if $systemd_running; then
        if systemctl list-unit-files "$svc.service" 2>/dev/null | grep -q "^$svc\.service"; then
            if systemctl is-active --quiet "$svc" || systemctl is-enabled --quiet "$svc" 2>/dev/null; then
                as_root systemctl disable --now "$svc" >/dev/null 2>&1 || true
                say "stopped and disabled systemd service $svc"
            fi
        fi
    elif [[ -x "/etc/init.d/$svc" ]]; then
        # No systemd here: talk to the SysV script directly (invoke-rc.d would ask policy-rc.d).
        if as_root "/etc/init.d/$svc" status >/dev/null 2>&1; then
            as_root "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
            say "stopped init.d service $svc"
        fi
        # Remove its boot-time links so a reboot does not start it again.
        if compgen -G "/etc/rc[2-5].d/S[0-9][0-9]$svc" >/dev/null; then
            as_root update-rc.d "$svc" disable >/dev/null 2>&1 || true
            say "disabled init.d service $svc at boot"
        fi
    fi
done

# Report any default port still taken, so a clash is never a mystery in a test run.
if command -v ss >/dev/null 2>&1; then
    for port in 11211 2181 9090 9093 9094 9100; do
        if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
            say "warning: something still listens on default port $port:"
            ss -Hltnp "sport = :$port" 2>/dev/null | sed 's/^/    /' || true
        fi
    done
fi

# ---------------------------------------------------------------------------
# 3. Python virtual environment with the real clients
# ---------------------------------------------------------------------------
venv_complete() {
    [[ -x "$VENV/bin/python" ]] || return 1
    local imports=""
    for mod in "${PYTHON_MODULES[@]}"; do
        imports+="import $mod; "
    done
    "$VENV/bin/python" -c "$imports" >/dev/null 2>&1
}

if venv_complete; then
    say "Python venv $VENV already has: ${PYTHON_PACKAGES[*]}"
else
    PYTHON="${PYTHON:-python3}"
    if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        say "$PYTHON lacks venv/ensurepip; installing python3-venv"
        as_root apt-get update -q
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends python3-venv
        PYTHON=/usr/bin/python3
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        say "creating Python venv $VENV"
        "$PYTHON" -m venv "$VENV"
    else
        say "completing Python venv $VENV"
    fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "${PYTHON_PACKAGES[@]}"
    if ! venv_complete; then
        say "Python venv $VENV is still incomplete after pip install" >&2
        exit 1
    fi
    say "Python venv $VENV has: ${PYTHON_PACKAGES[*]}"
fi

# ---------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------
for bin in memcached java prometheus promtool prometheus-node-exporter prometheus-alertmanager amtool; do
    if ! command -v "$bin" >/dev/null 2>&1; then
        say "warning: $bin not found on PATH" >&2
    fi
done
if [[ ! -e /usr/share/java/zookeeper.jar ]] && ! compgen -G '/usr/share/java/zookeeper*.jar' >/dev/null; then
    say "warning: no zookeeper jar under /usr/share/java" >&2
fi
say "done"
