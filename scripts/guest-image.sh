#!/usr/bin/env bash
# guest-image.sh [OUTDIR] builds doppel's Linux guest into OUTDIR
# (default build/guest):
#   vmlinuz         Debian's linux-image-cloud-amd64 kernel, the package and
#                   version pinned in scripts/guest.env (apt-get download)
#   config          that kernel's .config
#   modules/        the virtio-net modules of that kernel (lib/modules/...)
#   initramfs.cpio  a u-root initramfs (u-root pinned by guest/go.mod) with
#                   the commands listed as tools in guest/go.mod, the
#                   guest's own commands guestinit (/init: mounts, loads
#                   the modules, prints "doppel-guest: up ...", runs the
#                   shell) and workload, and the modules; the shell is
#                   gosh on the console,
#                   built with goshsmall: a plain "$ " prompt reading lines,
#                   no full-screen line editor (the console is a serial line)
# The kernel is fetched again only when the pinned version changes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
out=$(mkdir -p "${1:-build/guest}" && cd "${1:-build/guest}" && pwd)
. scripts/guest.env
want="$GUEST_KERNEL_PKG=$GUEST_KERNEL_VERSION"

# Kernel modules the initramfs carries, in the order guestinit loads them.
mods="kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko
kernel/drivers/virtio/virtio_pci.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko kernel/drivers/net/virtio_net.ko"

if [ "$(cat "$out/kernel.stamp" 2>/dev/null)" != "$want" ] || [ ! -f "$out/vmlinuz" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  echo "guest-image: fetching $want"
  if ! (cd "$tmp" && apt-get download "$want" >"$tmp/apt.log" 2>&1); then
    cat "$tmp/apt.log" >&2
    echo "guest-image: apt-get download $want failed: run 'apt-get update', or pin a version apt-cache policy $GUEST_KERNEL_PKG lists in scripts/guest.env" >&2
    exit 1
  fi
  dpkg-deb -x "$tmp"/*.deb "$tmp/root"
  kver=${GUEST_KERNEL_PKG#linux-image-}
  cp "$tmp/root/boot/vmlinuz-$kver" "$out/vmlinuz"
  cp "$tmp/root/boot/config-$kver" "$out/config"
  rm -rf "$out/modules"
  for m in $mods; do
    mkdir -p "$out/modules/lib/modules/$kver/$(dirname "$m")"
    cp "$tmp/root/lib/modules/$kver/$m" "$out/modules/lib/modules/$kver/$m"
  done
  echo "$want" > "$out/kernel.stamp"
fi

# The u-root tool at the version guest/go.mod requires.
uver=$(cd guest && go list -m -f '{{.Version}}' github.com/u-root/u-root)
uroot="$out/bin/u-root-$uver"
if [ ! -x "$uroot" ]; then
  echo "guest-image: building u-root $uver"
  GOBIN="$out/bin" go install "github.com/u-root/u-root@$uver"
  mv "$out/bin/u-root" "$uroot"
fi

# Rebuild the initramfs only when its inputs changed (image.sh runs this
# script on every image build). The workload imports cpu/xstate from the
# main module (guest/go.mod replaces it with this checkout).
inputs=$( (find guest cpu/xstate -type f -print0 | sort -z | xargs -0 sha256sum; \
  sha256sum scripts/guest-image.sh scripts/guest.env; echo "$uver") | sha256sum)
if [ -f "$out/initramfs.cpio" ] && [ "$(cat "$out/initramfs.stamp" 2>/dev/null)" = "$inputs" ]; then
  echo "guest-image: $out up to date"
  exit 0
fi
cmds=$(cd guest && go list tool)
(cd guest && GOOS=linux GOARCH=amd64 CGO_ENABLED=0 "$uroot" -o "$out/initramfs.cpio.tmp" \
  -initcmd=guestinit -uinitcmd= -defaultsh=gosh -go-build-tags goshsmall \
  -files "$out/modules/lib:lib" \
  $cmds ./cmds/guestinit ./cmds/workload)
mv "$out/initramfs.cpio.tmp" "$out/initramfs.cpio"
echo "$inputs" > "$out/initramfs.stamp"
for f in vmlinuz initramfs.cpio; do
  echo "guest-image: $out/$f $(stat -c %s "$out/$f") bytes"
done
