#!/usr/bin/env bash
# image.sh builds the bootable images under build/:
#   build/kernel.elf     the Go kernel (./kernel), a static linux/amd64 binary
#                        linked where the boot layer expects it (boot/goldflags)
#   build/doppel.bin     multiboot1+2 flat image: boot layer + kernel (qemu -kernel)
#   build/doppel.iso     GRUB, BIOS- and UEFI-bootable (Bochs, OVMF, real
#                        machines); until a real guest exists it boots the
#                        EPT dirty-tracking test (DOPPEL_CMDLINE overrides
#                        its command line)
#   build/testguest.bin  the EPT dirty-tracking test guest
#   build/testkernel.bin the multiboot1 test kernel (testkernels/): COM1,
#                        fw_cfg, exit through port 0xF4
#   build/vmlinuz, build/initramfs.cpio
#                        the Linux guest (scripts/guest-image.sh, cached in
#                        build/guest/), also on the ISO as the modules
#                        "vmlinuz" and "initramfs"; if it cannot be built
#                        the image is built without it, with a message
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build}
mkdir -p "$out"
ldflags=$(cat boot/goldflags)
CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath \
  -ldflags "$ldflags" -o "$out/kernel.elf" ./kernel
bash testguest/build.sh "$out"
bash testkernels/build.sh "$out"
rm -f "$out/vmlinuz" "$out/initramfs.cpio"
if [ -n "${DOPPEL_NO_GUEST:-}" ]; then
  echo "image: DOPPEL_NO_GUEST set: building without the Linux guest"
elif bash scripts/guest-image.sh build/guest; then
  cp build/guest/vmlinuz build/guest/initramfs.cpio "$out/"
else
  echo "image: the Linux guest could not be built (see above); the image and ISO are built without it" >&2
fi
export DOPPEL_CMDLINE=${DOPPEL_CMDLINE-doppel.guest=testguest doppel.dirtytest.rounds=50}
bash boot/build.sh "$out/kernel.elf" "$out"
# The ISO carries the Linux guest as modules too (boot/build.sh adds only the
# test guest): "vmlinuz" with the guest's own command line after its name,
# and "initramfs". Boot it with (once the Machine runs Linux guests)
#   DOPPEL_CMDLINE='doppel.guest=vmlinuz doppel.guest.initrd=initramfs'
if [ -f "$out/vmlinuz" ]; then
  bash scripts/mkiso.sh "$out/doppel.iso" "$out/doppel.bin" "$DOPPEL_CMDLINE" \
    "$out/testguest.bin" testguest \
    "$out/vmlinuz" "vmlinuz console=ttyS0" "$out/initramfs.cpio" initramfs
fi
ls -l "$out"/doppel.bin "$out"/doppel.iso | awk '{print "image:", $NF, $5, "bytes"}'
