#!/bin/sh
# Build the doppel test guest: testguest/build.sh <outdir> writes
# <outdir>/testguest.bin, a flat binary to load at guest-physical 0x100000.
set -eu
out=${1:?usage: testguest/build.sh <outdir>}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
as --32 -o "$tmp/guest.o" "$here/guest.s"
ld -m elf_i386 -nostdlib -N -Ttext=0x100000 -e _start --oformat=binary \
	-o "$out/testguest.bin" "$tmp/guest.o"
size=$(wc -c <"$out/testguest.bin")
# The image must stay inside the guest's 64 KiB code window.
if [ "$size" -gt 65536 ]; then
	echo "testguest: image of $size bytes exceeds its 64 KiB window" >&2
	exit 1
fi
echo "testguest: $out/testguest.bin ($size bytes)"
