# shellcheck shell=bash
# image/bytecode.sh -- talkie's -OO bytecode, compiled at build time by a native Python.
#
# Sourced by image/build. talkie.service runs with PYTHONOPTIMIZE=2, so it imports
# *.cpython-3XX.opt-2.pyc files; without them every start compiles talkie, its dependencies and
# the standard library from source (and cannot keep the result: /opt and /usr are root's).
# Bytecode depends on the Python version, not on the machine: the suite's own Python for the
# build host's architecture (a small cached mmdebstrap, about 1.5 minutes the first time)
# compiles the arm64 root's sources, in a few seconds instead of many minutes under qemu-user.
# The .pyc files name the image's paths (/opt/talkie/...) and their sources' mtimes and sizes
# (kept by mke2fs -d and by RAUC's raw copy of the root).

BYTECODE_DIRS=(/opt/talkie/lib /usr/lib/python3/dist-packages)  # and /usr/lib/python3.X

native_python_tar() {  # the suite's python3 for this machine, as a cached tarball (echoed)
    local arch tar
    arch=$(dpkg --print-architecture)
    tar=$CACHE/python-$SUITE-$arch.tar
    if [ ! -f "$tar" ] || [ ! -s "$tar" ]; then
        rm -rf "$tar" "$tar.part"
        say "bytecode: mmdebstrap $SUITE $arch with python3 (native, to compile the image's bytecode)" >&2
        mmdebstrap --arch="$arch" --variant=minbase --format=tar \
            --include="python3-minimal,libpython$PY_VERSION-stdlib" \
            --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            "$SUITE" "$tar.part" "deb $MIRROR $SUITE main" >&2 \
            || die "mmdebstrap of a native python3 failed (see above)"
        mv "$tar.part" "$tar"
    fi
    echo "$tar"
}

compile_bytecode() {  # compile_bytecode ROOT: -OO bytecode for talkie's venv and the OS's Python
    local root=$1 tar native magic start dirs=() dir made status=0
    start=$SECONDS
    tar=$(native_python_tar)
    native=$WORK/native-python
    rm -rf "$native"; mkdir -p "$native"
    tar -C "$native" -xf "$tar"
    # The same bytecode format (its magic number) on both sides, or the image would ignore it.
    magic='import importlib.util, sys; print(sys.version_info[:2], importlib.util.MAGIC_NUMBER.hex())'
    [ "$(chroot "$native" python3 -c "$magic")" = "$(chroot "$root" python3 -c "$magic")" ] \
        || die "bytecode: the native python3 ($(chroot "$native" python3 -V)) is not the image's ($(chroot "$root" python3 -V))"
    mkdir -p "$native/target"
    mount --bind "$root" "$native/target"
    for dir in "/usr/lib/python$PY_VERSION" "${BYTECODE_DIRS[@]}"; do
        [ -d "$root$dir" ] && dirs+=("/target$dir")
    done
    chroot "$native" env -u PYTHONDONTWRITEBYTECODE python3 -OO -m compileall -qq -j0 \
        -s /target -p / "${dirs[@]}" || status=$?
    umount "$native/target"
    rm -rf "$native"
    made=$(find "$root/opt/talkie" "$root/usr/lib/python$PY_VERSION" -name '*.opt-2.pyc' | wc -l)
    [ "$made" -gt 1000 ] || die "bytecode: only $made .opt-2.pyc files made"
    # (compileall exits 1 when a file does not compile: a test file in an odd syntax, say.)
    say "bytecode: $made -OO .pyc files in $((SECONDS - start)) s (compileall exit $status)"
}
