# shellcheck shell=bash
# smoke.sh -- boot a copy of a talkie Debian image under qemu-system-aarch64 and check talkie.
#
# Sourced by image/build (--smoke, --smoke-only IMAGE). The image itself is not changed: a sparse
# copy gets one extra unit, talkie-smoke.service, written into its ext4 root with debugfs (no loop
# device). Booted under `qemu-system-aarch64 -M virt` there is no sound card, no GPIO chip, no
# camera and no API key: talkie.service must still reach READY (Type=notify: "active running"),
# say in its status what is missing, and not restart. The unit prints what it sees to the serial
# console as "TALKIE-SMOKE ..." lines and powers off; smoke() reads them from the serial log.

SMOKE_WAIT=${SMOKE_WAIT:-40}   # seconds to watch talkie after READY (longer than WatchdogSec=30)
SMOKE_TIMEOUT=${SMOKE_TIMEOUT:-600}

smoke_unit() {
    cat <<EOF
# Only in the smoke copy of the image (image/smoke.sh): report talkie's state, then power off.
[Unit]
Description=talkie image smoke check
After=talkie.service talkie-firstboot.service
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=oneshot
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=300
ExecStart=/bin/sh -c 'for i in \$\$(seq 120); do [ "\$\$(systemctl show -P SubState talkie)" = running ] && break; sleep 1; done; echo "TALKIE-SMOKE first running after \$\$i s; watching for $SMOKE_WAIT s"; sleep $SMOKE_WAIT; systemctl show talkie -p ActiveState,SubState,StatusText,NRestarts,Result | sed "s/^/TALKIE-SMOKE /"; echo "TALKIE-SMOKE system \$\$(systemctl is-system-running)"; echo "TALKIE-SMOKE hostname \$\$(hostname)"; echo "TALKIE-SMOKE memory \$\$(grep VmRSS /proc/\$\$(systemctl show -P MainPID talkie)/status)"; echo "TALKIE-SMOKE root-size \$\$(findmnt -no SIZE /) data \$\$(findmnt -no SIZE /data) \$\$(grep -o "rauc.slot=[AB]" /proc/cmdline) (\$\$(systemctl show -P Result talkie-grow))"; ls /boot/firmware | grep talkie | sed "s/^/TALKIE-SMOKE boot-file /"; systemctl --failed --plain --no-legend | sed "s/^/TALKIE-SMOKE failed-unit /"; journalctl -b -o short-monotonic --no-pager -u talkie -u talkie-firstboot | sed "s/^/TALKIE-SMOKE journal /"; echo TALKIE-SMOKE end'

[Install]
WantedBy=multi-user.target
EOF
}

# ---- the Raspberry Pi firmware's boot, emulated (QEMU has no Pi firmware) ----------------------
part_field() {  # part_field CARD N start|size: partition N's start or size, in 512-byte sectors
    sfdisk --dump "$1" | tr -d ' ' | awk -F'[:=,]' -v n="$2" -v f="$3" '
        $1 ~ ("[^0-9]" n "$") { for (i = 2; i < NF; i++) if ($i == f) print $(i + 1) }'
}

fw_files() {  # fw_files CARD DIR TRYBOOT(0|1): choose as the firmware does; echo the partition
    # autoboot.txt on partition 1 names the boot partition ([tryboot] once after
    # `reboot '0 tryboot'`); that partition's config.txt names kernel= and initramfs; its
    # cmdline.txt is the kernel's command line. Written to DIR: vmlinuz, initrd.img, cmdline.txt.
    local card=$1 dir=$2 tryboot=$3 conf off part config kernel initrd flag=()
    conf=$(( $(part_field "$card" 1 start) * 512 ))
    mcopy -n -i "$card@@$conf" ::autoboot.txt "$dir/autoboot.txt" 2>/dev/null \
        || die "firmware: no autoboot.txt on partition 1 of $card"
    [ "$tryboot" = 1 ] && flag=(--tryboot)
    read -r part config < <(PYTHONPATH=$SRC/daemon python3 -m talkie.system.slots choose \
        "$dir/autoboot.txt" "${flag[@]}") || die "firmware: autoboot.txt: no boot partition"
    off=$(( $(part_field "$card" "$part" start) * 512 ))
    mcopy -n -i "$card@@$off" "::$config" "$dir/config.txt" 2>/dev/null \
        || die "firmware: no $config on partition $part"
    kernel=$(tr -d '\r' < "$dir/config.txt" | sed -n 's/^kernel=//p' | tail -1)
    initrd=$(tr -d '\r' < "$dir/config.txt" | sed -n 's/^initramfs[[:space:]]\+\([^[:space:]]*\).*/\1/p' | tail -1)
    [ -n "$kernel" ] && [ -n "$initrd" ] || die "firmware: $config on partition $part names no kernel= and initramfs"
    mcopy -n -i "$card@@$off" "::$kernel" "$dir/vmlinuz" \
        && mcopy -n -i "$card@@$off" "::$initrd" "$dir/initrd.img" \
        && mcopy -n -i "$card@@$off" ::cmdline.txt "$dir/cmdline.txt" \
        || die "firmware: $kernel, $initrd or cmdline.txt missing on partition $part"
    echo "$part"
}

fw_ending() {  # fw_ending LOG: how the boot ended: tryboot, reboot, poweroff or reset
    local last
    last=$(tr -d '\r' < "$1" | grep -a 'reboot: ' | tail -1) || true
    case "$last" in
        *"Restarting system with command '0 tryboot'"*) echo tryboot ;;
        *"Restarting system"*) echo reboot ;;
        *"Power down"*) echo poweroff ;;
        *) echo reset ;;  # a hang (timeout) or a crash: the board resets
    esac
}

fw_boot() {  # fw_boot CARD LOG TRYBOOT [QEMU ARGS...]: one boot; echo "PARTITION ENDING"
    local card=$1 log=$2 tryboot=$3 dir part cmdline status=0
    shift 3
    dir=$(mktemp -d "${TMPDIR:-/tmp}/talkie-fw.XXXXXX")
    part=$(fw_files "$card" "$dir" "$tryboot") || { rm -rf "$dir"; return 1; }
    # The Pi's consoles (tty0, ttyS1) become QEMU virt's serial port.
    cmdline="console=ttyAMA0 $(tr -d '\r' < "$dir/cmdline.txt" | tr ' ' '\n' | grep -v '^console=' | tr '\n' ' ')"
    say "firmware: boot partition $part$([ "$tryboot" = 1 ] && echo ' (tryboot)'): $cmdline" >&2
    timeout "$SMOKE_TIMEOUT" qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 \
        -nographic -monitor none -serial "file:$log" -no-reboot \
        -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" -append "$cmdline" \
        -drive "file=$card,format=raw,if=virtio" -nic none "$@" </dev/null || status=$?
    rm -rf "$dir"
    echo "$part $(fw_ending "$log")"
}

add_to_root() {  # add_to_root CARD N DEBUGFS-SCRIPT: run debugfs -w commands on partition N
    local card=$1 n=$2 cmds=$3 start sectors tmp
    start=$(part_field "$card" "$n" start); sectors=$(part_field "$card" "$n" size)
    [ -n "$start" ] && [ -n "$sectors" ] || die "no partition $n on $card"
    tmp=$(mktemp "${TMPDIR:-/tmp}/talkie-root.XXXXXX")
    dd if="$card" of="$tmp" bs=512 skip="$start" count="$sectors" conv=sparse status=none
    debugfs -w "$tmp" -f "$cmds" >/dev/null 2>"$tmp.err"
    if grep -v '^debugfs' "$tmp.err" | grep -q .; then
        cat "$tmp.err" >&2; rm -f "$tmp" "$tmp.err"; die "debugfs could not change partition $n"
    fi
    dd if="$tmp" of="$card" bs=512 seek="$start" conv=notrunc,sparse status=none
    rm -f "$tmp" "$tmp.err"
}

smoke() {  # smoke IMAGE LOG
    local img=$1 log=$2 dir start status boot

    for tool in qemu-system-aarch64:qemu-system-arm debugfs:e2fsprogs mcopy:mtools sfdisk:fdisk; do
        command -v "${tool%%:*}" >/dev/null || die "${tool%%:*} not found: apt-get install ${tool#*:}"
    done
    dir=$(mktemp -d "${TMPDIR:-/tmp}/talkie-smoke.XXXXXX")
    say "smoke: copying $img"
    cp --sparse=always "$img" "$dir/smoke.img"
    # A bigger "card" than the image, as a real one is: the data partition must grow into it.
    truncate -s +1G "$dir/smoke.img"
    # The smoke unit, into slot A's root (partition 5), enabled.
    smoke_unit > "$dir/talkie-smoke.service"
    cat > "$dir/debugfs.cmds" <<EOF
write $dir/talkie-smoke.service /etc/systemd/system/talkie-smoke.service
symlink /etc/systemd/system/multi-user.target.wants/talkie-smoke.service /etc/systemd/system/talkie-smoke.service
EOF
    add_to_root "$dir/smoke.img" 5 "$dir/debugfs.cmds"
    # SMOKE_BOOT_FILES=DIR: put its files (talkie.toml, talkie-api-key) on the config partition,
    # as a user would, to watch talkie firstboot take them.
    if [ -n "${SMOKE_BOOT_FILES:-}" ]; then
        boot=$(( $(part_field "$dir/smoke.img" 1 start) * 512 ))
        mcopy -o -i "$dir/smoke.img@@$boot" "$SMOKE_BOOT_FILES"/* ::
        say "smoke: on the config partition: $(ls "$SMOKE_BOOT_FILES" | tr '\n' ' ')"
    fi

    say "smoke: booting under qemu-system-aarch64 -M virt (serial log: $log)"
    start=$SECONDS
    status=$(fw_boot "$dir/smoke.img" "$log" 0) || status="? failed"
    rm -rf "$dir"
    say "smoke: boot partition ${status% *}, ended by ${status#* } after $((SECONDS - start)) s"
    smoke_verdict "$log"
}

smoke_verdict() {  # smoke_verdict LOG: exit status 0 when talkie was READY and steady
    local log=$1 bad=0 line
    tr -d '\r' < "$log" | grep -a 'TALKIE-SMOKE' | grep -av 'ExecStart=' > "$log.smoke" || true
    grep -aq '^TALKIE-SMOKE end' "$log.smoke" || grep -aq 'TALKIE-SMOKE end' "$log.smoke" \
        || { echo "smoke: FAIL: the smoke unit did not finish (see $log)" >&2; return 1; }
    sed -n 's/.*\(TALKIE-SMOKE \(ActiveState\|SubState\|StatusText\|NRestarts\|Result\|system\|first\|failed-unit\|hostname\|memory\|root-size\|boot-file\).*\)/\1/p' \
        "$log.smoke"
    for line in ActiveState=active SubState=running NRestarts=0 Result=success; do
        grep -aq "TALKIE-SMOKE $line\$" "$log.smoke" \
            || { echo "smoke: FAIL: talkie.service is not $line" >&2; bad=1; }
    done
    grep -aq 'TALKIE-SMOKE StatusText=..*' "$log.smoke" \
        || { echo "smoke: FAIL: talkie.service has no status text" >&2; bad=1; }
    # Under QEMU there is no sound card, GPIO chip, camera or key: the status must name a gap.
    grep -aiq 'TALKIE-SMOKE StatusText=.*\(no \|missing\|not found\)' "$log.smoke" \
        || { echo "smoke: FAIL: talkie.service's status does not say what is missing" >&2; bad=1; }
    # The data partition grows into the card at first boot (trixie's minbase once lacked
    # resize2fs for it).
    grep -aq 'TALKIE-SMOKE root-size .*(success)$' "$log.smoke" \
        || { echo "smoke: FAIL: the data partition did not grow (talkie-grow.service)" >&2; bad=1; }
    if grep -aq 'TALKIE-SMOKE journal .*Traceback' "$log.smoke"; then
        echo "smoke: FAIL: a Python traceback in talkie's journal" >&2; bad=1
    fi
    [ "$bad" = 0 ] && say "smoke: PASS: talkie.service READY, not restarting"
    return "$bad"
}
