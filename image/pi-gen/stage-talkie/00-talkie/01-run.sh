#!/bin/bash -e
# pi-gen runs this on the build host, in this folder, with ${ROOTFS_DIR} the image's root.
# image/pi-gen/build has put talkie's source (files/talkie-src: image/, systemd/, config/) and the
# aarch64 wheelhouse (files/wheelhouse) next to it; 02-run-chroot.sh installs from /tmp/talkie-*.
for part in talkie-src wheelhouse; do
	if [ ! -d "files/${part}" ]; then
		echo "stage-talkie: files/${part} is missing: run image/pi-gen/build, not pi-gen alone" >&2
		exit 1
	fi
	rm -rf "${ROOTFS_DIR}/tmp/${part}"
	cp -a "files/${part}" "${ROOTFS_DIR}/tmp/${part}"
done
