#!/bin/bash -e
# pi-gen feeds this to bash inside the image (on_chroot): the same install as the Debian image.
/tmp/talkie-src/image/install-talkie --root / --wheelhouse /tmp/wheelhouse
rm -rf /tmp/talkie-src /tmp/wheelhouse
find /opt/talkie -name __pycache__ -prune -exec rm -rf {} +
# talkie.service runs with PYTHONOPTIMIZE=2: its -OO bytecode, for talkie's venv and the OS's
# Python, so no start compiles them again (as image/bytecode.sh does for the Debian image;
# compileall exits 1 when a file in an odd syntax does not compile: not a failure here).
py=$(python3 -c 'import sys; print("python%d.%d" % sys.version_info[:2])')
python3 -OO -m compileall -qq -j0 /opt/talkie/lib "/usr/lib/$py" /usr/lib/python3/dist-packages || true
test "$(find /opt/talkie -name '*.opt-2.pyc' | wc -l)" -gt 100
