#!/usr/bin/env bash
# Host tuning for a Kalshi gatherer or deduplicator instance (see tuning/README.md):
#  1. NIC interrupts: pin every IRQ of the NIC to the IRQ core(s), make that the default for new
#     IRQs, and stop irqbalance (or ban the other cores from it), so that the shard and writer
#     cores are never interrupted by packet processing.
#  2. Network sysctls for many long-lived WebSocket connections: socket buffers, busy polling,
#     backlogs, keepalive, reconnect-friendly TIME_WAIT handling. Written to a sysctl.d file so
#     they survive a reboot, and loaded now.
#
# By default it only prints what it would do (--dry-run). --apply does it (root required).
# IRQ affinity does not survive a reboot: run this with --apply at boot, before the services
# (tuning/README.md shows a oneshot unit).
set -euo pipefail
shopt -s extglob

usage() {
    cat <<'EOF'
Usage: apply-host-tuning.sh [--dry-run | --apply] [options]

  --dry-run             print what would be done, change nothing (the default)
  --apply               do it (needs root)
  --irq-cpus LIST       CPUs for NIC interrupts, e.g. 0 or 0,8 (default: CPU 0, plus its
                        hyperthread sibling on hosts with 16 or more vCPUs)
  --nic IFACE           network interface (default: the one of the default route)
  --irqbalance MODE     stop  = stop and disable irqbalance (default)
                        ban   = keep it, but ban every CPU except --irq-cpus
                        leave = do not touch it
  --busy-poll USEC      net.core.busy_poll and busy_read in microseconds (default 50; 0 = off)
  --sysctl-file PATH    where to write the sysctls (default /etc/sysctl.d/60-kalshi-network.conf)
  --no-irq              skip the IRQ part
  --no-sysctl           skip the sysctl part
  -h, --help            this text
EOF
}

mode=dry-run
irq_cpus=
nic=
irqbalance_mode=stop
busy_poll=50
sysctl_file=/etc/sysctl.d/60-kalshi-network.conf
do_irq=1
do_sysctl=1

need_value() {
    if [ $# -lt 2 ] || [ -z "$2" ]; then
        echo "apply-host-tuning: $1 needs a value" >&2
        exit 2
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) mode=dry-run ;;
        --apply) mode=apply ;;
        --irq-cpus) need_value "$@"; irq_cpus=$2; shift ;;
        --nic) need_value "$@"; nic=$2; shift ;;
        --irqbalance) need_value "$@"; irqbalance_mode=$2; shift ;;
        --busy-poll) need_value "$@"; busy_poll=$2; shift ;;
        --sysctl-file) need_value "$@"; sysctl_file=$2; shift ;;
        --no-irq) do_irq=0 ;;
        --no-sysctl) do_sysctl=0 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "apply-host-tuning: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

case "$irqbalance_mode" in
    stop | ban | leave) ;;
    *) echo "apply-host-tuning: --irqbalance must be stop, ban or leave, not '$irqbalance_mode'" >&2; exit 2 ;;
esac
if ! [[ "$busy_poll" =~ ^[0-9]+$ ]]; then
    echo "apply-host-tuning: --busy-poll must be a number of microseconds, not '$busy_poll'" >&2
    exit 2
fi
if [ "$mode" = apply ] && [ "$(id -u)" -ne 0 ]; then
    echo "apply-host-tuning: --apply needs root" >&2
    exit 1
fi

warnings=0
say() { printf '%s\n' "$*"; }
warn() {
    printf 'warning: %s\n' "$*" >&2
    warnings=$((warnings + 1))
}

# Runs a command in --apply mode; prints it in --dry-run mode.
run() {
    if [ "$mode" = apply ]; then
        say "+ $*"
        "$@"
    else
        say "would run: $*"
    fi
}

# Writes VALUE to FILE (a /proc or /sys knob) in --apply mode; prints it in --dry-run mode.
# A failure is a warning, not fatal: some IRQs (kernel-managed ones) refuse to move.
write_knob() {
    local file=$1 value=$2 current
    current=$(cat "$file" 2>/dev/null || echo '?')
    if [ "$current" = "$value" ] || { [[ "$file" == */default_smp_affinity ]] &&
        [ "$(normalize_mask "$current")" = "$(normalize_mask "$value")" ]; }; then
        say "ok: $file is already $value"
        return 0
    fi
    if [ "$mode" = apply ]; then
        say "+ echo $value > $file   (was $current)"
        if ! printf '%s\n' "$value" 2>/dev/null >"$file"; then
            warn "could not write $value to $file (kernel-managed IRQ or not permitted)"
        fi
    else
        say "would write: $value > $file   (now $current)"
    fi
}

n_cpus=$(getconf _NPROCESSORS_ONLN)

# A hex CPU mask without separators and leading zeros, so that "3", "00000003" and
# "00000000,00000003" compare equal.
normalize_mask() {
    local m=${1//,/}
    m=${m##+(0)}
    printf '%s\n' "${m:-0}"
}

# Expands a CPU list ("0,8", "0-3,8") into one CPU number a line; fails on anything else.
expand_cpus() {
    local part lo hi
    IFS=',' read -r -a parts <<<"$1"
    for part in "${parts[@]}"; do
        if [[ "$part" =~ ^([0-9]+)-([0-9]+)$ ]]; then
            lo=${BASH_REMATCH[1]} hi=${BASH_REMATCH[2]}
        elif [[ "$part" =~ ^[0-9]+$ ]]; then
            lo=$part hi=$part
        else
            echo "apply-host-tuning: bad CPU list '$1'" >&2
            return 1
        fi
        seq "$lo" "$hi"
    done
}

# Turns a CPU list into the hex mask format of /proc/irq/*/smp_affinity: 32-bit words,
# most significant first, separated by commas.
cpus_to_mask() {
    local cpu words=() i out=
    local n_words=$(((n_cpus + 31) / 32))
    for ((i = 0; i < n_words; i++)); do words[i]=0; done
    while read -r cpu; do
        words[cpu / 32]=$((words[cpu / 32] | (1 << (cpu % 32))))
    done < <(expand_cpus "$1")
    for ((i = n_words - 1; i >= 0; i--)); do
        out+=$(printf '%08x' "${words[i]}")
        if [ "$i" -gt 0 ]; then out+=,; fi
    done
    printf '%s\n' "$out"
}

# Part-wise maximum of two space-separated number lists of the same length (sysctl values), so
# that tuning never lowers a limit the host already raised further.
raise_only_value() {
    local -a have want
    local i out=()
    read -r -a have <<<"$1"
    read -r -a want <<<"$2"
    if [ "${#have[@]}" -ne "${#want[@]}" ]; then
        printf '%s\n' "$2"
        return
    fi
    for i in "${!want[@]}"; do
        if [[ "${have[i]}" =~ ^[0-9]+$ ]] && [ "${have[i]}" -gt "${want[i]}" ]; then
            out+=("${have[i]}")
        else
            out+=("${want[i]}")
        fi
    done
    printf '%s\n' "${out[*]}"
}

say "== apply-host-tuning ($mode), $n_cpus vCPUs"

if [ "$do_irq" -eq 1 ]; then
    if [ -z "$irq_cpus" ]; then
        irq_cpus=0
        if [ "$n_cpus" -ge 16 ]; then
            # One whole physical core for interrupts: CPU 0 and its hyperthread sibling.
            siblings=/sys/devices/system/cpu/cpu0/topology/thread_siblings_list
            irq_cpus=$(cat "$siblings" 2>/dev/null || echo 0)
        fi
    fi
    expand_cpus "$irq_cpus" >/dev/null
    while read -r cpu; do
        if [ "$cpu" -ge "$n_cpus" ]; then
            echo "apply-host-tuning: IRQ CPU $cpu does not exist (this host has $n_cpus vCPUs)" >&2
            exit 2
        fi
    done < <(expand_cpus "$irq_cpus")

    if [ -z "$nic" ]; then
        nic=$(ip -o route show default 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')
    fi
    if [ -z "$nic" ] || [ ! -e "/sys/class/net/$nic" ]; then
        echo "apply-host-tuning: no network interface '${nic:-?}' (give one with --nic)" >&2
        exit 2
    fi
    say "== NIC $nic: interrupts to CPU(s) $irq_cpus"

    # The NIC's IRQs: the MSI-X vectors of its PCI device (ENA on EC2), or of the PCI parent of
    # a virtio device, else the lines of /proc/interrupts that name the interface or device.
    irqs=()
    dev=
    if [ -e "/sys/class/net/$nic/device" ]; then
        dev=$(readlink -f "/sys/class/net/$nic/device")
    fi
    for dir in "$dev/msi_irqs" "$dev/../msi_irqs"; do
        if [ -n "$dev" ] && [ -d "$dir" ]; then
            while read -r irq; do irqs+=("$irq"); done < <(ls "$dir")
            break
        fi
    done
    if [ "${#irqs[@]}" -eq 0 ]; then
        names=("$nic")
        if [ -n "$dev" ]; then names+=("$(basename "$dev")"); fi
        for name in "${names[@]}"; do
            while read -r irq; do irqs+=("$irq"); done < <(
                awk -v n="$name" '$1 ~ /^[0-9]+:$/ && ($NF == n || index($NF, n "-") == 1) { sub(":", "", $1); print $1 }' /proc/interrupts
            )
        done
    fi
    if [ "${#irqs[@]}" -eq 0 ]; then
        warn "found no IRQs for $nic (virtual NIC without MSI-X?); nothing to pin"
    fi
    for irq in "${irqs[@]}"; do
        if [ -e "/proc/irq/$irq/smp_affinity_list" ]; then
            write_knob "/proc/irq/$irq/smp_affinity_list" "$irq_cpus"
        fi
    done
    # IRQs allocated later (a NIC reset, a new queue) start on these CPUs too.
    write_knob /proc/irq/default_smp_affinity "$(cpus_to_mask "$irq_cpus")"

    # irqbalance would move the IRQs back within seconds.
    irqbalance_active=0
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet irqbalance 2>/dev/null; then
        irqbalance_active=1
    fi
    case "$irqbalance_mode" in
        stop)
            if [ "$irqbalance_active" -eq 1 ]; then
                run systemctl disable --now irqbalance
            else
                say "ok: irqbalance is not running"
            fi
            ;;
        ban)
            if ! command -v irqbalance >/dev/null 2>&1; then
                say "ok: irqbalance is not installed; nothing to ban"
            else
                banned=$(seq 0 $((n_cpus - 1)) | grep -vxF -f <(expand_cpus "$irq_cpus") | paste -sd, -)
                conf=/etc/default/irqbalance
                say "irqbalance: ban CPUs ${banned:-none} (IRQBALANCE_BANNED_CPULIST in $conf)"
                if [ "$mode" = apply ]; then
                    touch "$conf"
                    sed -i '/^IRQBALANCE_BANNED_CPULIST=/d' "$conf"
                    printf 'IRQBALANCE_BANNED_CPULIST=%s\n' "$banned" >>"$conf"
                    if [ "$irqbalance_active" -eq 1 ]; then run systemctl restart irqbalance; fi
                else
                    say "would write: IRQBALANCE_BANNED_CPULIST=$banned >> $conf"
                    if [ "$irqbalance_active" -eq 1 ]; then say "would run: systemctl restart irqbalance"; fi
                fi
            fi
            ;;
        leave) say "irqbalance: left alone (it may move the IRQs again)" ;;
    esac
fi

if [ "$do_sysctl" -eq 1 ]; then
    say "== network sysctls -> $sysctl_file"
    # key value why. Keys marked "+" only raise: where the host already has more (each part of a
    # multi-value key compared separately), its value is kept.
    settings=(
        "+net.core.rmem_max 16777216 let a busy socket grow its receive buffer to 16 MiB"
        "+net.core.wmem_max 16777216 same for send buffers"
        "+net.ipv4.tcp_rmem 4096\t131072\t16777216 TCP receive buffer min/default/max (autotuned)"
        "+net.ipv4.tcp_wmem 4096\t65536\t16777216 TCP send buffer min/default/max"
        "+net.core.netdev_max_backlog 16384 packets queued per CPU before the stack drops them (bursts after a reconnect wave)"
        "+net.core.somaxconn 4096 listen backlog of the metrics and health endpoints"
        "net.core.busy_poll $busy_poll usec to busy-poll the NIC in poll/epoll before sleeping (0 = off)"
        "net.core.busy_read $busy_poll usec to busy-poll on a blocking socket read (0 = off)"
        "net.ipv4.tcp_slow_start_after_idle 0 a quiet market's connection keeps its congestion window"
        "net.ipv4.tcp_keepalive_time 60 find dead connections in about 2 minutes, not 2 hours"
        "net.ipv4.tcp_keepalive_intvl 10 keepalive probe interval"
        "net.ipv4.tcp_keepalive_probes 6 keepalive probes before the connection is dropped"
        "net.ipv4.tcp_fin_timeout 15 release closed connections sooner during reconnect storms"
        "net.ipv4.tcp_tw_reuse 1 reuse TIME_WAIT ports for new outgoing connections"
        "net.ipv4.ip_local_port_range 10240\t65535 more ephemeral ports for outgoing connections"
        "net.ipv4.tcp_mtu_probing 1 recover from path-MTU black holes (EC2 uses MTU 9001 inside the VPC)"
    )
    content="# Written by tuning/apply-host-tuning.sh: network settings for the Kalshi services."$'\n'
    for entry in "${settings[@]}"; do
        read -r key rest <<<"$entry"
        raise_only=0
        if [[ "$key" == +* ]]; then
            raise_only=1
            key=${key#+}
        fi
        # The value is the first word; tabs inside it separate the parts of multi-value keys.
        value=${rest%% *}
        why=${rest#* }
        value=${value//\\t/ }
        if [ ! -e "/proc/sys/${key//.//}" ]; then
            warn "$key does not exist on this kernel (or in this network namespace); skipped"
            continue
        fi
        current=$(sysctl -n "$key" 2>/dev/null | tr -s '[:space:]' ' ')
        current=${current% }
        if [ "$raise_only" -eq 1 ]; then
            value=$(raise_only_value "$current" "$value")
        fi
        if [ "$current" = "$value" ]; then
            say "ok: $key = $value"
        else
            say "$key: $current -> $value   ($why)"
        fi
        content+="# $why"$'\n'"$key = $value"$'\n'
    done
    if [ "$mode" = apply ]; then
        say "+ write $sysctl_file"
        mkdir -p "$(dirname "$sysctl_file")"
        printf '%s' "$content" >"$sysctl_file"
        run sysctl -p "$sysctl_file"
    else
        say "would write $sysctl_file and run: sysctl -p $sysctl_file"
    fi
fi

if [ "$mode" = dry-run ]; then
    say "== dry run: nothing changed (run with --apply as root to apply)"
fi
if [ "$warnings" -gt 0 ]; then
    say "== done with $warnings warning(s)"
else
    say "== done"
fi
