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
ExecStart=/bin/sh -c 'for i in \$\$(seq 120); do [ "\$\$(systemctl show -P SubState talkie)" = running ] && break; sleep 1; done; echo "TALKIE-SMOKE first running after \$\$i s; watching for $SMOKE_WAIT s"; sleep $SMOKE_WAIT; systemctl show talkie -p ActiveState,SubState,StatusText,NRestarts,Result | sed "s/^/TALKIE-SMOKE /"; echo "TALKIE-SMOKE system \$\$(systemctl is-system-running)"; echo "TALKIE-SMOKE hostname \$\$(hostname)"; echo "TALKIE-SMOKE root-size \$\$(findmnt -no SIZE /) (\$\$(systemctl show -P Result talkie-grow-root))"; ls /boot/firmware | grep talkie | sed "s/^/TALKIE-SMOKE boot-file /"; systemctl --failed --plain --no-legend | sed "s/^/TALKIE-SMOKE failed-unit /"; journalctl -b -o short-monotonic --no-pager -u talkie -u talkie-firstboot | sed "s/^/TALKIE-SMOKE journal /"; echo TALKIE-SMOKE end'

[Install]
WantedBy=multi-user.target
EOF
}

smoke() {  # smoke IMAGE LOG
    local img=$1 log=$2 dir start sectors rootoff bootoff status kernel initrd

    for tool in qemu-system-aarch64:qemu-system-arm debugfs:e2fsprogs mcopy:mtools sfdisk:fdisk; do
        command -v "${tool%%:*}" >/dev/null || die "${tool%%:*} not found: apt-get install ${tool#*:}"
    done
    dir=$(mktemp -d "${TMPDIR:-/tmp}/talkie-smoke.XXXXXX")
    say "smoke: copying $img"
    cp --sparse=always "$img" "$dir/smoke.img"
    # A bigger "card" than the image, as a real one is: the root must grow into it at first boot.
    truncate -s +1G "$dir/smoke.img"
    # Partition offsets (512-byte sectors) from the MBR.
    bootoff=$(sfdisk --dump "$dir/smoke.img" | awk -F'[=,]' '/^[^ ]*1 :/ {gsub(/ /, "", $2); print $2}')
    rootoff=$(sfdisk --dump "$dir/smoke.img" | awk -F'[=,]' '/^[^ ]*2 :/ {gsub(/ /, "", $2); print $2}')
    sectors=$(sfdisk --dump "$dir/smoke.img" | awk -F'[=,]' '/^[^ ]*2 :/ {gsub(/ /, "", $4); print $4}')
    [ -n "$bootoff" ] && [ -n "$rootoff" ] && [ -n "$sectors" ] || die "smoke: $img: no MBR with two partitions"
    # The kernel and initrd, as the firmware would load them from the boot partition.
    kernel=$(mdir -b -i "$dir/smoke.img@@$((bootoff * 512))" :: | sed -n 's|^::/||p' | grep '^vmlinuz' | sort -V | tail -1)
    initrd=$(mdir -b -i "$dir/smoke.img@@$((bootoff * 512))" :: | sed -n 's|^::/||p' | grep '^initrd.img' | sort -V | tail -1)
    [ -n "$kernel" ] && [ -n "$initrd" ] || die "smoke: no vmlinuz-*/initrd.img-* on the boot partition of $img"
    mcopy -n -i "$dir/smoke.img@@$((bootoff * 512))" "::$kernel" "$dir/vmlinuz"
    mcopy -n -i "$dir/smoke.img@@$((bootoff * 512))" "::$initrd" "$dir/initrd.img"
    # The smoke unit, into a copy of the root partition, enabled.
    dd if="$dir/smoke.img" of="$dir/root.ext4" bs=512 skip="$rootoff" count="$sectors" \
        conv=sparse status=none
    smoke_unit > "$dir/talkie-smoke.service"
    debugfs -w "$dir/root.ext4" -f - >/dev/null 2>"$dir/debugfs.err" <<EOF
write $dir/talkie-smoke.service /etc/systemd/system/talkie-smoke.service
symlink /etc/systemd/system/multi-user.target.wants/talkie-smoke.service /etc/systemd/system/talkie-smoke.service
EOF
    if grep -v '^debugfs' "$dir/debugfs.err" | grep -q .; then
        cat "$dir/debugfs.err" >&2; die "smoke: debugfs could not add the smoke unit"
    fi
    dd if="$dir/root.ext4" of="$dir/smoke.img" bs=512 seek="$rootoff" conv=notrunc,sparse status=none
    rm -f "$dir/root.ext4"
    # SMOKE_BOOT_FILES=DIR: put its files (talkie.toml, talkie-api-key) on the boot partition, as
    # a user would, to watch talkie firstboot take them.
    if [ -n "${SMOKE_BOOT_FILES:-}" ]; then
        mcopy -o -i "$dir/smoke.img@@$((bootoff * 512))" "$SMOKE_BOOT_FILES"/* ::
        say "smoke: on the boot partition: $(ls "$SMOKE_BOOT_FILES" | tr '\n' ' ')"
    fi

    say "smoke: booting under qemu-system-aarch64 -M virt (serial log: $log)"
    start=$SECONDS
    status=0
    timeout "$SMOKE_TIMEOUT" qemu-system-aarch64 -M virt -cpu cortex-a72 -smp 2 -m 1024 \
        -nographic -monitor none -serial "file:$log" -no-reboot \
        -kernel "$dir/vmlinuz" -initrd "$dir/initrd.img" \
        -append "console=ttyAMA0 root=LABEL=RASPIROOT rw" \
        -drive "file=$dir/smoke.img,format=raw,if=virtio" -nic none </dev/null || status=$?
    rm -rf "$dir"
    say "smoke: qemu exited ($status) after $((SECONDS - start)) s"
    smoke_verdict "$log"
}

smoke_verdict() {  # smoke_verdict LOG: exit status 0 when talkie was READY and steady
    local log=$1 bad=0 line
    tr -d '\r' < "$log" | grep -a 'TALKIE-SMOKE' | grep -av 'ExecStart=' > "$log.smoke" || true
    grep -aq '^TALKIE-SMOKE end' "$log.smoke" || grep -aq 'TALKIE-SMOKE end' "$log.smoke" \
        || { echo "smoke: FAIL: the smoke unit did not finish (see $log)" >&2; return 1; }
    sed -n 's/.*\(TALKIE-SMOKE \(ActiveState\|SubState\|StatusText\|NRestarts\|Result\|system\|first\|failed-unit\|hostname\|root-size\|boot-file\).*\)/\1/p' \
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
    # The root grows into the card at first boot (trixie's minbase once lacked resize2fs for it).
    grep -aq 'TALKIE-SMOKE root-size .*(success)$' "$log.smoke" \
        || { echo "smoke: FAIL: the root file system did not grow (talkie-grow-root.service)" >&2; bad=1; }
    if grep -aq 'TALKIE-SMOKE journal .*Traceback' "$log.smoke"; then
        echo "smoke: FAIL: a Python traceback in talkie's journal" >&2; bad=1
    fi
    [ "$bad" = 0 ] && say "smoke: PASS: talkie.service READY, not restarting"
    return "$bad"
}
