#!/usr/bin/env bash
# qemu.sh installs a second QEMU for comparison runs: Debian 13's (trixie)
# qemu-system-x86, unpacked with its own libraries into one directory,
# beside the system's (Debian 12's 7.2, which the tests use). It was made to
# ask whether issue 11's AMD-V triple fault follows the emulator (it does
# not go away on 10.0: docs/design.md). Nothing of the system changes: apt
# runs with its own lists and status, and dpkg only unpacks.
#   DOPPEL_QEMU=$(bash scripts/qemu.sh) make emu
#
#   scripts/qemu.sh        install if missing, then print the binary's path
#   scripts/qemu.sh path   print where it is (or would be)
#
# The directory is $DOPPEL_QEMU_DIR, else /opt/doppel/qemu for root and
# ~/.cache/doppel/qemu for others. qemu-test and scripts/run.sh take their
# QEMU from $DOPPEL_QEMU, else from PATH.
set -euo pipefail

if [ -n "${DOPPEL_QEMU_DIR:-}" ]; then
  dir=$DOPPEL_QEMU_DIR
elif [ "$(id -u)" = 0 ]; then
  dir=/opt/doppel/qemu
else
  dir=${XDG_CACHE_HOME:-$HOME/.cache}/doppel/qemu
fi
bin=$dir/bin/qemu-system-x86_64
if [ "${1:-}" = path ]; then
  echo "$bin"
  exit 0
fi
if "$bin" --version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi

suite=trixie
echo "qemu: fetching Debian $suite's qemu-system-x86 into $dir" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
touch "$tmp/status"
cat >"$tmp/trixie.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt=(-q -o Dir::Etc::sourcelist="$tmp/trixie.sources" -o Dir::Etc::sourceparts=-
  -o Dir::State::Lists="$tmp/lists" -o Dir::Cache="$tmp/cache"
  -o Dir::State::status="$tmp/status" -o Debug::NoLocking=1)
# apt's download sandbox user cannot enter the private directory.
[ "$(id -u)" = 0 ] && apt+=(-o APT::Sandbox::User=root)
apt-get "${apt[@]}" update >/dev/null
# An empty status: apt fetches the whole closure, libc included, so the
# binary runs on its own libraries whatever the host's release.
apt-get "${apt[@]}" install -y --download-only --no-install-recommends qemu-system-x86 >/dev/null
rm -rf "$dir.new"
mkdir -p "$dir.new"
for deb in "$tmp"/cache/archives/*.deb; do
  dpkg -x "$deb" "$dir.new/root"
done
mkdir -p "$dir.new/bin"
cat >"$dir.new/bin/qemu-system-x86_64" <<'WRAP'
#!/bin/sh
# Debian trixie's QEMU on its own loader and libraries (scripts/qemu.sh).
root=$(dirname "$(dirname "$(readlink -f "$0")")")/root
lib=$root/usr/lib/x86_64-linux-gnu
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$root/usr/bin/qemu-system-x86_64" \
  -L "$root/usr/share/qemu" -L "$root/usr/share/seabios" "$@"
WRAP
chmod +x "$dir.new/bin/qemu-system-x86_64"
"$dir.new/bin/qemu-system-x86_64" --version | head -1 >&2
rm -rf "$dir"
mv "$dir.new" "$dir"
echo "$bin"
