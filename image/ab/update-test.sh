# shellcheck shell=bash
# image/ab/update-test.sh -- the A/B update test under QEMU (image/build --update-test).
#
# Sourced by image/build after smoke.sh (fw_boot: the Raspberry Pi firmware's choice, emulated
# from the card's own autoboot.txt and a one-shot tryboot flag) and lib.sh (bundles). On a copy of
# the image, booted again and again the way a Pi would:
#   1. slot A (the default) boots; `talkie update good.raucb` installs an update into slot B and
#      reboots with '0 tryboot' (systemctl --reboot-argument); the harness sets the emulated
#      one-shot flag;
#   2. the firmware boots [tryboot]: slot B; talkie-health.service finds talkie READY and the
#      microphone delivering and commits (B is autoboot.txt's default now); then
#      `talkie update broken.raucb` (talkie cannot start) goes into slot A, '0 tryboot' again;
#   3. slot A's trial: talkie never gets READY; the health check marks it bad and reboots plainly;
#   4. the firmware boots the default, slot B: talkie READY, the previous update still there.
# The test unit (talkie-abtest.service, in slot A of the copy and in both test bundles) prints
# "TALKIE-AB ..." lines and takes the next step; its step counter and the bundles are on a second
# virtual disk. The verdict reads the serial logs. Needs the image's pieces beside it
# (IMAGE%.img.root.ext4, .boot.vfat) and the signing key whose certificate the image holds.

UPDATE_BOOTS=${UPDATE_BOOTS:-6}
UPDATE_TIMEOUT=${UPDATE_TIMEOUT:-1800}  # seconds per boot (the first one installs an update)
# A sound card for the microphone check: QEMU's HD audio (silence in, nothing out), and the
# kernel's ALSA loopback in the test copies.
UPDATE_QEMU_AUDIO=(-audiodev none,id=snd0 -device ich9-intel-hda -device hda-duplex,audiodev=snd0)

# What a user sets, which every update must keep (first boot's talkie.toml on the config
# partition: a setting and [network] hostname; then a volume the daemon keeps in /var/lib/talkie).
UPDATE_HOSTNAME=abtest-kitchen UPDATE_MODEL=gemini-3.1-flash-live-preview UPDATE_VOLUME=37

update_boot_toml() {  # the talkie.toml put on the test card's config partition
    printf '# The A/B update test: a setting and a host name, which both updates must keep.\n'
    printf '[live]\nmodel = "%s"\n\n[network]\nhostname = "%s"\n' "$UPDATE_MODEL" "$UPDATE_HOSTNAME"
}

update_level() {  # the volume as volume.json keeps it: 37 -> 0.37
    awk "BEGIN { print $UPDATE_VOLUME / 100 }"
}

abtest_script() {
    sed -e "s/AB_MODEL/$UPDATE_MODEL/g" -e "s/AB_VOLUME/$UPDATE_VOLUME/g" \
        -e "s/AB_LEVEL/$(update_level)/g" <<'EOF'
#!/bin/sh
# Only in the A/B update test's copies (image/ab/update-test.sh): report, then the next step.
say() { echo "TALKIE-AB $*"; }
show() { systemctl show -P "$1" "$2"; }
say "boot $(grep -o 'rauc.slot=[AB]' /proc/cmdline) image=$(cat /usr/lib/talkie/image-release) uptime=$(cut -d' ' -f1 /proc/uptime)"
say "talkie $(show ActiveState talkie)/$(show SubState talkie) NRestarts=$(show NRestarts talkie)"
say "health $(show Result talkie-health) done-at=$(show ExecMainExitTimestampMonotonic talkie-health)"
/opt/talkie/bin/talkie ctl status 2>&1 | sed 's/^/TALKIE-AB ctl /'
# What the user set, which every update must keep: [network] hostname and a [live] model from
# the config partition's talkie.toml at first boot; the volume set on boot 1 (volume.json).
say "kept hostname=$(hostname) /etc/hostname=$(cat /etc/hostname)"
say "kept config $(grep -c '^model = "AB_MODEL"' /etc/talkie/talkie.toml) model line(s) AB_MODEL"
say "kept daemon $(journalctl -b -o cat -u talkie | grep -o 'starting (config [^)]*)' | tail -1)"
say "kept state $(cat /var/lib/talkie/volume.json 2>&1 | tr -d '\n')"
/opt/talkie/bin/talkie update --status 2>&1 | sed 's/^/TALKIE-AB slots /'
grep -v '^#' /boot/firmware/autoboot.txt | sed 's/^/TALKIE-AB autoboot /'
journalctl -b -o cat -u talkie-health | grep -v '^ *$' | sed 's/^/TALKIE-AB health-log /'
if [ "$(show Result talkie-health)" != success ]; then
    say "health check failed: its reboot follows"; sleep 900; exit 0
fi
mkdir -p /mnt/abtest
mount /dev/vdb /mnt/abtest || { say "no test drive"; systemctl poweroff; exit 0; }
step=$(cat /mnt/abtest/step)
case "$step" in
    0|1)
        bundle=good.raucb; [ "$step" = 1 ] && bundle=broken.raucb
        if [ "$step" = 0 ]; then
            # The daemon writes the volume into /var/lib/talkie (the data partition).
            say "marker $(/opt/talkie/bin/talkie ctl volume AB_VOLUME 2>&1 | tr '\n' ' ')"
            for _ in 1 2 3 4 5 6 7 8 9 10; do  # (written by the daemon's writer thread)
                grep -qF '"level":AB_LEVEL,' /var/lib/talkie/volume.json 2>/dev/null && break; sleep 1
            done
            sync; say "marker state $(cat /var/lib/talkie/volume.json 2>&1 | tr -d '\n')"
        fi
        echo $((step + 1)) > /mnt/abtest/step; sync
        say "step $step: talkie update $bundle at uptime=$(cut -d' ' -f1 /proc/uptime)"
        # talkie update reboots with '0 tryboot' itself; its lines stream to the console.
        ( /opt/talkie/bin/talkie update "/mnt/abtest/$bundle" 2>&1; echo "exit $?" > /run/abtest.status ) \
            | sed -u 's/^/TALKIE-AB install /'
        if [ "$(cat /run/abtest.status)" = "exit 0" ]; then
            say "installed at uptime=$(cut -d' ' -f1 /proc/uptime); the reboot follows"; sleep 900; exit 0
        fi
        say "install failed ($(cat /run/abtest.status))"; umount /mnt/abtest; systemctl poweroff ;;
    *)
        say "step $step: done"; umount /mnt/abtest; systemctl poweroff ;;
esac
EOF
}

abtest_unit() {
    cat <<'EOF'
# Only in the A/B update test's copies (image/ab/update-test.sh).
[Unit]
Description=talkie A/B update test step
After=talkie-health.service talkie.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/talkie-abtest
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=1800

[Install]
WantedBy=multi-user.target
EOF
}

abtest_cmds() {  # abtest_cmds DIR: debugfs commands adding the test unit (files in DIR)
    local dir=$1
    abtest_script > "$dir/talkie-abtest"; chmod 0755 "$dir/talkie-abtest"
    abtest_unit > "$dir/talkie-abtest.service"
    echo snd-aloop > "$dir/talkie-abtest.conf"
    cat > "$dir/abtest.cmds" <<EOF
write $dir/talkie-abtest /usr/local/sbin/talkie-abtest
sif /usr/local/sbin/talkie-abtest mode 0100755
write $dir/talkie-abtest.service /etc/systemd/system/talkie-abtest.service
symlink /etc/systemd/system/multi-user.target.wants/talkie-abtest.service /etc/systemd/system/talkie-abtest.service
write $dir/talkie-abtest.conf /etc/modules-load.d/talkie-abtest.conf
EOF
    echo "$dir/abtest.cmds"
}

update_test_bundles() {  # update_test_bundles BASE DIR RELEASE: DIR/drive/{good,broken}.raucb
    local base=$1 dir=$2 release=$3 cmds
    cmds=$(abtest_cmds "$dir")
    mkdir -p "$dir/drive"
    cp --sparse=always "$base.root.ext4" "$dir/good.ext4"
    debugfs -w "$dir/good.ext4" -f "$cmds" >/dev/null 2>&1
    ab_set_release "$dir/good.ext4" "$release+update-test"
    cp --sparse=always "$dir/good.ext4" "$dir/broken.ext4"
    ab_break_root "$dir/broken.ext4"
    ab_set_release "$dir/broken.ext4" "$release+broken-for-test"
    local start=$SECONDS
    ab_bundle "$base.boot.vfat" "$dir/good.ext4" "$release+update-test" "update test" \
        "$dir/drive/good.raucb" "$KEYDIR"
    say "update test: bundle made in $((SECONDS - start)) s: $(stat -c %s "$dir/drive/good.raucb") bytes"
    ab_bundle "$base.boot.vfat" "$dir/broken.ext4" "$release+broken-for-test" \
        "update test: talkie cannot start" "$dir/drive/broken.raucb" "$KEYDIR"
    rm -f "$dir/good.ext4" "$dir/broken.ext4"
    echo 0 > "$dir/drive/step"
    mke2fs -q -t ext4 -L ABTEST -d "$dir/drive" "$dir/drive.ext4" \
        "$(( $(du -sm "$dir/drive" | cut -f1) + 64 ))M"
    rm -rf "$dir/drive"
}

update_test() {  # update_test IMAGE: exit status 0 when both updates went as they should
    local img=$1 base=${1%.img} dir release n=0 tryboot=0 result part ending log start
    local log_dir=${img%.img}.update-test SMOKE_TIMEOUT=$UPDATE_TIMEOUT
    for tool in qemu-system-aarch64:qemu-system-arm debugfs:e2fsprogs mcopy:mtools sfdisk:fdisk \
                rauc:rauc mksquashfs:squashfs-tools; do
        command -v "${tool%%:*}" >/dev/null || die "${tool%%:*} not found: apt-get install ${tool#*:}"
    done
    [ -f "$base.root.ext4" ] && [ -f "$base.boot.vfat" ] \
        || die "update test: no $base.root.ext4 and $base.boot.vfat beside $img (image/build makes them)"
    cmp -s <(debugfs -R "cat /etc/rauc/keyring.pem" "$base.root.ext4" 2>/dev/null) "$KEYDIR/cert.pem" \
        || die "update test: $KEYDIR/cert.pem is not the keyring in $img (--key DIR)"
    release=$(debugfs -R "cat /usr/lib/talkie/image-release" "$base.root.ext4" 2>/dev/null)
    dir=$(mktemp -d "$(dirname "$img")/update-test.XXXXXX")
    rm -rf "$log_dir"; mkdir -p "$log_dir"
    say "update test: the card (a copy of $img, 1 GiB bigger) and the test bundles"
    cp --sparse=always "$img" "$dir/card.img"
    truncate -s +1G "$dir/card.img"
    add_to_root "$dir/card.img" 5 "$(abtest_cmds "$dir")"
    update_boot_toml > "$dir/talkie.toml"
    mcopy -o -i "$dir/card.img@@$(( $(part_field "$dir/card.img" 1 start) * 512 ))" \
        "$dir/talkie.toml" ::talkie.toml
    update_test_bundles "$base" "$dir" "$release"
    start=$SECONDS
    while [ "$n" -lt "$UPDATE_BOOTS" ]; do
        n=$((n + 1))
        log=$log_dir/boot-$n.log
        result=$(fw_boot "$dir/card.img" "$log" "$tryboot" \
            -drive "file=$dir/drive.ext4,format=raw,if=virtio" "${UPDATE_QEMU_AUDIO[@]}") \
            || { rm -rf "$dir"; die "update test: boot $n could not start"; }
        read -r part ending <<< "$result"
        say "update test: boot $n: partition $part$([ "$tryboot" = 1 ] && echo ' (tryboot)'), ended by $ending at $((SECONDS - start)) s"
        # The firmware's one-shot flag: set by `reboot '0 tryboot'`, gone after the next boot.
        tryboot=0
        case "$ending" in
            tryboot) tryboot=1 ;;
            poweroff) break ;;
        esac
    done
    rm -rf "$dir"
    update_verdict "$log_dir"
}

update_verdict() {  # update_verdict LOGDIR: the boots went A, B (trial, committed), A (trial,
    # failed), B, and B ended with talkie READY
    local logs=$1 bad=0 f order="" line
    for f in $(ls "$logs"/boot-*.log 2>/dev/null | sort -V); do
        tr -d '\r' < "$f" | grep -a 'TALKIE-AB \|talkie-health: ' | grep -av 'ExecStart' > "$f.ab" || true
        line=$(grep -ao 'TALKIE-AB boot rauc.slot=[AB]' "$f.ab" | head -1 | sed 's/.*=//') || true
        [ -n "$line" ] || line=$(grep -aoq 'talkie-health: trial boot of slot A' "$f.ab" && echo a \
            || { grep -aoq 'talkie-health: trial boot of slot B' "$f.ab" && echo b; } || echo '?')
        order="$order${line}"
        sed -n 's/.*\(talkie-health: .*\)/\1/p; s/.*\(TALKIE-AB \(boot\|talkie\|health \|step\|installed\|install failed\|slots\|kept\|marker\|ctl \(slot\|image\|microphone_stream\|state\|volume\)\).*\)/\1/p' "$f.ab" \
            | sed "s|^|$(basename "$f" .log): |"
    done
    say "update test: slots booted, in order: $order (a = a trial that never reported)"
    [ "$order" = ABaB ] || [ "$order" = ABAB ] \
        || { echo "update test: FAIL: the slots booted were $order, not A B (A) B" >&2; bad=1; }
    local file pattern what
    while IFS='|' read -r file pattern what; do
        must_find -aq "$logs/$file" "$pattern" "$what" || bad=1
    done <<'CHECKS'
boot-2.log|talkie-health: slot B committed|the update was not committed on its trial boot (boot 2)
boot-3.log|talkie-health: slot A failed its trial|the broken update's trial boot (boot 3) did not fail its health check
boot-4.log|TALKIE-AB talkie active/running|talkie is not READY back on the previous slot (boot 4)
boot-4.log|TALKIE-AB step 2: done|the test did not finish on boot 4
boot-4.log|TALKIE-AB boot rauc.slot=B image=.*+update-test|boot 4 is not the first update's slot B
CHECKS
    update_kept "$logs" || bad=1
    [ "$bad" = 0 ] && say "update test: PASS: update committed after its trial; broken update rolled back by itself; settings, state and host name kept"
    return "$bad"
}

must_find() {  # must_find GREP-FLAGS FILE PATTERN WHAT: a FAIL line naming WHAT unless FILE has it
    grep "$1" -- "$3" "$2" 2>/dev/null || { echo "update test: FAIL: $4" >&2; return 1; }
}

update_kept() {  # update_kept LOGDIR: what the user set on boot 1 is there, and used, on boots 2
    # (the update) and 4 (back from the broken one)
    local logs=$1 bad=0 n log state
    state="{\"level\":$(update_level),"
    must_find -aqF "$logs/boot-1.log.ab" "TALKIE-AB marker state $state" \
        "boot 1 did not set the volume (/var/lib/talkie/volume.json)" || bad=1
    for n in 1 2 4; do
        log=$logs/boot-$n.log.ab  # (update_verdict's: TALKIE-AB lines, no CRs)
        must_find -aq "$log" "TALKIE-AB kept hostname=$UPDATE_HOSTNAME /etc/hostname=$UPDATE_HOSTNAME\$" \
            "boot $n: the host name is not $UPDATE_HOSTNAME ([network] hostname)" || bad=1
        must_find -aq "$log" "TALKIE-AB kept config 1 model line(s) $UPDATE_MODEL" \
            "boot $n: /etc/talkie/talkie.toml lost model = \"$UPDATE_MODEL\"" || bad=1
        must_find -aq "$log" "TALKIE-AB kept daemon starting (config /etc/talkie/talkie.toml, model $UPDATE_MODEL)" \
            "boot $n: talkie did not start with model $UPDATE_MODEL" || bad=1
        [ "$n" = 1 ] && continue
        must_find -aqF "$log" "TALKIE-AB kept state $state" \
            "boot $n: /var/lib/talkie/volume.json lost the volume" || bad=1
        must_find -aq "$log" "TALKIE-AB ctl volume: $UPDATE_VOLUME\$" \
            "boot $n: talkie's volume is not $UPDATE_VOLUME (ctl status)" || bad=1
    done
    return "$bad"
}
