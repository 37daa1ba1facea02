# shellcheck shell=bash
# image/ab/lib.sh -- the A/B layout of the Debian image and its signed RAUC update bundles.
#
# Sourced by image/build. The card (MBR; the Raspberry Pi firmware reads partition 1's
# autoboot.txt, see daemon/talkie/system/slots.py):
#   p1 TALKIECONF  FAT   autoboot.txt, talkie-slots.txt; talkie.toml and talkie-api-key at first
#                        boot (mounted on /boot/firmware, where talkie firstboot looks)
#   p2 boot A      FAT   firmware, kernel, initrd, config.txt, cmdline.txt (root=PARTUUID=..-05)
#   p3 boot B      FAT   the same for slot B (..-06)
#   p4 extended:  p5 root A (ext4), p6 root B (ext4), p7 TALKIEDATA (ext4, grows into the card at
#                        first boot; /data: /etc/talkie, /var/lib/talkie, RAUC's status)
# RAUC (Debian's rauc) installs signed bundles into the slot group that is not running:
# rootfs.0 + boot.0 (A) or rootfs.1 + boot.1 (B), with a custom bootloader backend on
# autoboot.txt and the firmware's tryboot (image/ab/rauc-backend).

AB_DISK_ID=0x7a1c1e01        # the MBR's disk id: PARTUUIDs 7a1c1e01-05 ... (system.conf, cmdline)
AB_COMPATIBLE=talkie-debian-arm64
AB_CONF_MB=64 AB_BOOT_MB=256 AB_DATA_MB=256
# Installed over the cached base (its cache key stays the same): RAUC and its D-Bus service.
AB_PACKAGES=(rauc rauc-service)
# What survives every update: on the data partition, bind-mounted over the slot's own copies.
AB_DATA_DIRS=(/etc/talkie /var/lib/talkie /etc/wpa_supplicant /root/.ssh)

ab_partuuid() {  # ab_partuuid N
    printf '%s-%02d' "${AB_DISK_ID#0x}" "$1"
}

ab_system_conf() {  # RAUC's /etc/rauc/system.conf
    cat <<EOF2
# RAUC's view of the talkie card (image/ab/lib.sh). Slot groups: rootfs.0 + boot.0 (A),
# rootfs.1 + boot.1 (B); the firmware's autoboot.txt/tryboot choose between them.
[system]
compatible=$AB_COMPATIBLE
bootloader=custom
data-directory=/data/rauc
bundle-formats=-plain

[keyring]
path=/etc/rauc/keyring.pem

[handlers]
bootloader-custom-backend=/usr/lib/talkie/rauc-backend
post-install=/usr/lib/talkie/rauc-post-install

[slot.rootfs.0]
device=/dev/disk/by-partuuid/$(ab_partuuid 5)
type=ext4
bootname=A
resize=true

[slot.boot.0]
device=/dev/disk/by-partuuid/$(ab_partuuid 2)
type=vfat
parent=rootfs.0

[slot.rootfs.1]
device=/dev/disk/by-partuuid/$(ab_partuuid 6)
type=ext4
bootname=B
resize=true

[slot.boot.1]
device=/dev/disk/by-partuuid/$(ab_partuuid 3)
type=vfat
parent=rootfs.1
EOF2
}

ab_manifest() {  # ab_manifest VERSION DESCRIPTION: a bundle's manifest.raucm
    cat <<EOF2
[update]
compatible=$AB_COMPATIBLE
version=$1
description=$2

[bundle]
format=verity

[image.rootfs]
filename=root.ext4

[image.boot]
filename=boot.vfat
EOF2
}

ab_fstab() {
    cat <<EOF2
# talkie Debian image, A/B layout (image/ab/lib.sh). The root is the running slot's, named on the
# kernel command line (root=PARTUUID=...); the config and data partitions by label.
LABEL=TALKIECONF  /boot/firmware  vfat  rw,noatime,umask=0077  0 2
LABEL=TALKIEDATA  /data           ext4  rw,noatime             0 2
EOF2
    local dir
    for dir in "${AB_DATA_DIRS[@]}"; do
        printf '/data%s  %s  none  bind,x-systemd.requires-mounts-for=/data  0 0\n' "$dir" "$dir"
    done
}

# ---- the root file system: RAUC, its config, the backend, the health check ---------------------
ab_configure_rootfs() {  # ab_configure_rootfs ROOT RELEASE (chroot mounts in place)
    local root=$1 release=$2 dir
    say "A/B: rauc into the chroot (apt-get, from $MIRROR)"
    # The host's resolver for apt in the chroot (the image's own is systemd-resolved's link).
    local resolv=$root/etc/resolv.conf saved=""
    if [ -e "$resolv" ] || [ -L "$resolv" ]; then
        saved=$root/etc/resolv.conf.talkie-saved; mv "$resolv" "$saved"
    fi
    cp -L /etc/resolv.conf "$resolv"
    chroot "$root" apt-get -q -o Acquire::Retries=3 update >/dev/null \
        || die "apt-get update in the chroot failed"
    chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get -q -y --no-install-recommends \
        install "${AB_PACKAGES[@]}" >/dev/null || die "apt-get install rauc in the chroot failed"
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/*_*
    rm -f "$resolv"; [ -z "$saved" ] || mv "$saved" "$resolv"
    say "A/B: $(chroot "$root" rauc --version)"
    install -D -m 0644 /dev/stdin "$root/etc/rauc/system.conf" < <(ab_system_conf)
    install -D -m 0644 "$KEYDIR/cert.pem" "$root/etc/rauc/keyring.pem"
    install -D -m 0755 "$SRC/image/ab/rauc-backend" "$root/usr/lib/talkie/rauc-backend"
    install -D -m 0755 "$SRC/image/ab/rauc-post-install" "$root/usr/lib/talkie/rauc-post-install"
    install -D -m 0644 "$SRC/image/ab/talkie-health.service" \
        "$root/etc/systemd/system/talkie-health.service"
    ln -sfn /etc/systemd/system/talkie-health.service \
        "$root/etc/systemd/system/multi-user.target.wants/talkie-health.service"
    echo "$release" > "$root/usr/lib/talkie/image-release"
    # A kernel that hangs is reset by the SoC's watchdog: the firmware then boots the default.
    mkdir -p "$root/etc/systemd/system.conf.d"
    printf '[Manager]\nRuntimeWatchdogSec=60s\n' > "$root/etc/systemd/system.conf.d/talkie-watchdog.conf"
    ab_fstab > "$root/etc/fstab"
    mkdir -p "$root/data"
    for dir in "${AB_DATA_DIRS[@]}"; do mkdir -p "$root$dir"; done
    chmod 0700 "$root/root/.ssh"
    # The firmware hook writes cmdline.txt: slot A's root and name (rauc-post-install
    # retargets a copy written into slot B).
    sed -i -e "s|^#\?ROOTPART=.*|ROOTPART=PARTUUID=$(ab_partuuid 5)|" "$root/etc/default/raspi-firmware"
    echo "rauc.slot=A" > "$root/etc/default/raspi-extra-cmdline"
}

ab_data_tree() {  # ab_data_tree ROOT DIR: the data partition's first contents, from the root
    local root=$1 data=$2 dir
    rm -rf "$data"; mkdir -p "$data/rauc"
    for dir in "${AB_DATA_DIRS[@]}"; do
        mkdir -p "$data$(dirname "$dir")"
        cp -a "$root$dir" "$data$dir"
    done
}

# ---- the image: config + boot A + boot B + (root A, root B, data) -----------------------------
ab_assemble() {  # ab_assemble ROOT IMG: also IMG's pieces IMG%.img.boot.vfat, .root.ext4 (bundles)
    local root=$1 img=$2 bootdir base=${2%.img} root_mb slot_mb start
    bootdir=$WORK/bootfs
    rm -rf "$bootdir"
    mv "$root/boot/firmware" "$bootdir"
    mkdir -m 0755 "$root/boot/firmware"
    ab_data_tree "$root" "$WORK/data"
    root_mb=$(( $(du -sm "$root" | cut -f1) * 12 / 10 + 128 ))
    # Room in each root slot for later, bigger updates.
    slot_mb=$(( (root_mb * 3 / 2 + 255) / 256 * 256 ))
    say "assemble: config ${AB_CONF_MB} MiB, boot 2 x ${AB_BOOT_MB} MiB, root 2 x ${slot_mb} MiB (file system ${root_mb} MiB), data ${AB_DATA_MB} MiB"
    [ "$(du -sm "$bootdir" | cut -f1)" -lt $((AB_BOOT_MB - 16)) ] || die "the boot files do not fit ${AB_BOOT_MB} MiB"
    rm -f "$WORK"/*.vfat "$WORK"/*.ext4 "$base.boot.vfat" "$base.root.ext4"
    mkfs.vfat -n TALKIECONF -C "$WORK/conf.vfat" $((AB_CONF_MB * 1024)) >/dev/null
    PYTHONPATH=$SRC/daemon python3 -m talkie.system.slots render A > "$WORK/autoboot.txt"
    mcopy -i "$WORK/conf.vfat" "$WORK/autoboot.txt" ::autoboot.txt
    mkfs.vfat -F 32 -n TALKIEBOOT -C "$base.boot.vfat" $((AB_BOOT_MB * 1024)) >/dev/null
    mcopy -i "$base.boot.vfat" -s -p -m "$bootdir"/* ::
    mke2fs -q -t ext4 -L TALKIEROOT -d "$root" -E root_owner=0:0 "$base.root.ext4" "${root_mb}M"
    mke2fs -q -t ext4 -L TALKIEDATA -d "$WORK/data" -E root_owner=0:0 "$WORK/data.ext4" "${AB_DATA_MB}M"
    rm -f "$img.part"
    # 4 MiB before each partition (the first's alignment, then each logical's EBR and alignment).
    local p1=4 p2 p3 p4 p5 p6 p7 end
    p2=$((p1 + AB_CONF_MB)); p3=$((p2 + AB_BOOT_MB)); p4=$((p3 + AB_BOOT_MB))
    p5=$((p4 + 4)); p6=$((p5 + slot_mb + 4)); p7=$((p6 + slot_mb + 4)); end=$((p7 + AB_DATA_MB))
    truncate -s $((end * 1024 * 1024)) "$img.part"
    sfdisk --quiet "$img.part" <<EOF2
label: dos
label-id: $AB_DISK_ID
start=${p1}MiB, size=${AB_CONF_MB}MiB, type=c
start=${p2}MiB, size=${AB_BOOT_MB}MiB, type=c, bootable
start=${p3}MiB, size=${AB_BOOT_MB}MiB, type=c
start=${p4}MiB, type=5
start=${p5}MiB, size=${slot_mb}MiB, type=83
start=${p6}MiB, size=${slot_mb}MiB, type=83
start=${p7}MiB, size=${AB_DATA_MB}MiB, type=83
EOF2
    for start in "$p1:$WORK/conf.vfat" "$p2:$base.boot.vfat" "$p3:$base.boot.vfat" \
                 "$p5:$base.root.ext4" "$p7:$WORK/data.ext4"; do
        dd if="${start#*:}" of="$img.part" bs=1M seek="${start%%:*}" conv=notrunc,sparse status=none
    done
    # Slot B starts out a copy of A (a card never has an empty slot to fall back on).
    dd if="$base.root.ext4" of="$img.part" bs=1M seek="$p6" conv=notrunc,sparse status=none
    mv "$img.part" "$img"
    rm -f "$WORK/conf.vfat" "$WORK/data.ext4"
}

# ---- signing keys and bundles ---------------------------------------------------------------
ab_keys() {  # ab_keys DIR: a signing key and its self-signed certificate (the image's keyring)
    local dir=$1
    [ -s "$dir/key.pem" ] && [ -s "$dir/cert.pem" ] && return
    say "keys: a new bundle signing key in $dir (keep it: bundles for this image need it)"
    mkdir -p "$dir"; chmod 0700 "$dir"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" -days 7300 \
        -subj "/O=talkie/CN=talkie update signing $(hostname)" 2>/dev/null \
        || die "openssl could not make a signing key in $dir"
    chmod 0600 "$dir/key.pem"
}

ab_bundle() {  # ab_bundle BOOT.vfat ROOT.ext4 VERSION DESCRIPTION OUT.raucb KEYDIR
    local boot=$1 rootfs=$2 version=$3 description=$4 out=$5 keys=$6 dir
    command -v rauc >/dev/null || die "rauc not found: apt-get install rauc squashfs-tools"
    command -v mksquashfs >/dev/null || die "mksquashfs not found: apt-get install squashfs-tools"
    dir=$(mktemp -d "${TMPDIR:-/tmp}/talkie-bundle.XXXXXX")
    ab_manifest "$version" "$description" > "$dir/manifest.raucm"
    cp --sparse=always "$boot" "$dir/boot.vfat"
    cp --sparse=always "$rootfs" "$dir/root.ext4"
    rm -f "$out"
    rauc bundle --cert="$keys/cert.pem" --key="$keys/key.pem" "$dir" "$out" >/dev/null \
        || { rm -rf "$dir"; die "rauc bundle failed"; }
    rm -rf "$dir"
}

ab_break_root() {  # ab_break_root ROOT.ext4: talkie.service cannot start (the fall-back test)
    local rootfs=$1 conf
    conf=$(mktemp)
    printf '# For the A/B fall-back test only: talkie cannot start.\n[Service]\nExecStart=\nExecStart=/bin/false\n' > "$conf"
    debugfs -w "$rootfs" -f - >/dev/null 2>&1 <<EOF2
mkdir /etc/systemd/system/talkie.service.d
write $conf /etc/systemd/system/talkie.service.d/broken-for-test.conf
EOF2
    rm -f "$conf"
    debugfs -R "cat /etc/systemd/system/talkie.service.d/broken-for-test.conf" "$rootfs" 2>/dev/null \
        | grep -q 'ExecStart=/bin/false' || die "could not break talkie.service in $rootfs"
}

ab_set_release() {  # ab_set_release ROOT.ext4 RELEASE
    local file
    file=$(mktemp); echo "$2" > "$file"
    debugfs -w "$1" -R "rm /usr/lib/talkie/image-release" >/dev/null 2>&1 || true
    debugfs -w "$1" -R "write $file /usr/lib/talkie/image-release" >/dev/null 2>&1
    rm -f "$file"
}
