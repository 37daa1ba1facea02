#!/bin/bash -e
# pi-gen feeds this to bash inside the image (on_chroot): the same install as the Debian image.
/tmp/talkie-src/image/install-talkie --root / --wheelhouse /tmp/wheelhouse
rm -rf /tmp/talkie-src /tmp/wheelhouse
find /opt/talkie -name __pycache__ -prune -exec rm -rf {} +
