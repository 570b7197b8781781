#!/usr/bin/env bash
# Checks the systemd files in tuning/:
#  * `systemd-analyze verify` on kalshi-gatherer.service and kalshi-deduplicator.service reports
#    nothing (no unknown keys or sections, no parse failures, no errors). The binaries are
#    usually not installed where this runs, so the units are verified as copies whose ExecStart
#    points at stand-in executables in a temporary directory (everything else is unchanged);
#  * `systemd-analyze security --offline` rates each unit's exposure at most 2.0;
#  * the units keep the settings operators rely on (CPU affinity, memlock, restart, credentials,
#    user, config path, drain timeout, hardening);
#  * kalshi.sysusers.conf and kalshi.tmpfiles.conf apply cleanly to a scratch root and create the
#    user and every ReadWritePaths= directory;
#  * tuning/apply-host-tuning.sh is shellcheck-clean (shellcheck is installed with apt-get when
#    missing), its dry run succeeds without changing anything, and it refuses bad arguments.
# Exits non-zero, naming the problem, on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# systemd-analyze security --threshold is in tenths of the printed exposure level (0..100): 20 is
# an exposure of 2.0. The units rate 1.4 today.
MAX_EXPOSURE=20
UNITS=(kalshi-gatherer kalshi-deduplicator)

for tool in systemd-analyze systemd-sysusers systemd-tmpfiles; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "check-units: $tool not found (Debian package systemd)" >&2
        exit 1
    fi
done
systemd-analyze --version | head -n 1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0

fail() {
    echo "FAIL: $*" >&2
    failed=1
}

for unit in "${UNITS[@]}"; do
    src="tuning/$unit.service"
    echo "== $src"

    # The real ExecStart, exactly: the binary name and config path are contracts.
    config_name=${unit#kalshi-}
    want="ExecStart=/usr/bin/$unit --config /etc/kalshi/$config_name.toml"
    grep -qxF "$want" "$src" || fail "$src: ExecStart is not '$want'"

    # Settings this project depends on (design.md §2, issue 7).
    for key in 'User=kalshi' 'Group=kalshi' 'Restart=always' 'RestartSec=' 'LimitMEMLOCK=' \
        'CPUAffinity=' 'TimeoutStopSec=' 'KillSignal=SIGTERM' 'NoNewPrivileges=yes' \
        'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' 'CapabilityBoundingSet=' \
        'SystemCallFilter=@system-service' 'ReadWritePaths=/var/lib/kalshi/' 'MemoryMax=' \
        'RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX' 'EnvironmentFile='; do
        grep -q "^$key" "$src" || fail "$src: no $key line"
    done
    if [ "$unit" = kalshi-gatherer ]; then
        grep -qx 'LoadCredential=kalshi-key:/etc/kalshi/credentials/kalshi-key' "$src" ||
            fail "$src: no LoadCredential=kalshi-key:... line"
    fi

    # A stand-in executable at a temporary path, and a copy of the unit that runs it.
    printf '#!/bin/sh\nexit 0\n' >"$work/$unit"
    chmod 0755 "$work/$unit"
    sed "s|^ExecStart=/usr/bin/$unit |ExecStart=$work/$unit |" "$src" >"$work/$unit.service"
    grep -q "^ExecStart=$work/$unit " "$work/$unit.service" ||
        fail "$src: could not point ExecStart at the stand-in"

    # verify prints problems on stderr and may still exit 0 (an unknown key is "ignored"), so
    # both its status and its output count.
    status=0
    out=$(cd "$work" && systemd-analyze verify --man=no "$unit.service" 2>&1) || status=$?
    if [ -n "$out" ]; then
        printf '%s\n' "$out"
    fi
    if [ "$status" -ne 0 ]; then
        fail "$src: systemd-analyze verify exited $status"
    fi
    if printf '%s\n' "$out" | grep -qiE 'unknown|failed|error|invalid|ignoring|not executable|deprecated|warning'; then
        fail "$src: systemd-analyze verify reported problems (above)"
    fi

    # Hardening level, as systemd rates it (0 = fully locked down, 10 = fully exposed).
    status=0
    out=$(cd "$work" && systemd-analyze security --offline=true --threshold="$MAX_EXPOSURE" \
        --no-pager "$unit.service" 2>&1) || status=$?
    printf '%s\n' "$out" | grep -E 'Overall exposure level' || true
    if [ "$status" -ne 0 ]; then
        fail "$src: exposure level above $MAX_EXPOSURE/10 (systemd-analyze security --offline)"
    fi
done

echo "== tuning/kalshi.sysusers.conf and tuning/kalshi.tmpfiles.conf on a scratch root"
root="$work/root"
mkdir -p "$root/etc" "$root/usr/lib/sysusers.d" "$root/usr/lib/tmpfiles.d"
: >"$root/etc/passwd"
: >"$root/etc/group"
: >"$root/etc/shadow"
: >"$root/etc/gshadow"
cp tuning/kalshi.sysusers.conf "$root/usr/lib/sysusers.d/kalshi.conf"
cp tuning/kalshi.tmpfiles.conf "$root/usr/lib/tmpfiles.d/kalshi.conf"
# With --root, a bare file name is looked up in the root's configuration directories.
systemd-sysusers --root="$root" kalshi.conf || fail "systemd-sysusers rejected kalshi.sysusers.conf"
grep -q '^kalshi:' "$root/etc/passwd" || fail "kalshi.sysusers.conf did not create user kalshi"
grep -q '^kalshi:' "$root/etc/group" || fail "kalshi.sysusers.conf did not create group kalshi"
out=$(systemd-tmpfiles --root="$root" --create kalshi.conf 2>&1) ||
    fail "systemd-tmpfiles rejected kalshi.tmpfiles.conf: $out"
kalshi_uid=$(awk -F: '$1 == "kalshi" { print $3 }' "$root/etc/passwd")
for unit in "${UNITS[@]}"; do
    while read -r dir; do
        dir=${dir#-}
        if [ ! -d "$root$dir" ]; then
            fail "tuning/$unit.service: ReadWritePaths=$dir is not created by kalshi.tmpfiles.conf"
        elif [ "$(stat -c %u "$root$dir")" != "$kalshi_uid" ]; then
            fail "kalshi.tmpfiles.conf: $dir is not owned by kalshi"
        fi
    done < <(sed -n 's/^ReadWritePaths=//p' "tuning/$unit.service" | tr ' ' '\n')
done

echo "== tuning/apply-host-tuning.sh: shellcheck and a dry run"
if ! command -v shellcheck >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends shellcheck >/dev/null ||
            echo "check-units: shellcheck could not be installed" >&2
    elif command -v sudo >/dev/null 2>&1; then
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends shellcheck >/dev/null ||
            echo "check-units: shellcheck could not be installed" >&2
    fi
fi
if command -v shellcheck >/dev/null 2>&1; then
    shellcheck tuning/apply-host-tuning.sh scripts/check-units.sh scripts/check-monitoring.sh ||
        fail "shellcheck reported problems (above)"
else
    fail "shellcheck is not installed (apt-get install shellcheck)"
fi
# The dry run must succeed and change nothing: the sysctl file it names must not appear.
# `--nic lo` keeps it independent of this machine's NIC (lo has no IRQs: a warning, not an error).
status=0
out=$(tuning/apply-host-tuning.sh --nic lo --sysctl-file "$work/sysctl.conf" 2>&1) || status=$?
if [ "$status" -ne 0 ]; then
    printf '%s\n' "$out"
    fail "apply-host-tuning.sh dry run exited $status"
elif ! printf '%s\n' "$out" | grep -q 'dry run: nothing changed'; then
    printf '%s\n' "$out"
    fail "apply-host-tuning.sh dry run did not say it changed nothing"
fi
if [ -e "$work/sysctl.conf" ]; then
    fail "apply-host-tuning.sh dry run wrote its sysctl file"
fi
for bad in --bogus '--irqbalance maybe' '--busy-poll fast' "--irq-cpus $(getconf _NPROCESSORS_ONLN)"; do
    # shellcheck disable=SC2086 # word splitting into option and value is intended
    if tuning/apply-host-tuning.sh $bad >/dev/null 2>&1; then
        fail "apply-host-tuning.sh accepted bad arguments: $bad"
    fi
done

if [ "$failed" -ne 0 ]; then
    echo "== unit checks FAILED" >&2
    exit 1
fi
echo "== unit checks passed"
