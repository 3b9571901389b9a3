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
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-build}
mkdir -p "$out"
ldflags=$(cat boot/goldflags)
CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath \
  -ldflags "$ldflags" -o "$out/kernel.elf" ./kernel
bash testguest/build.sh "$out"
bash testkernels/build.sh "$out"
export DOPPEL_CMDLINE=${DOPPEL_CMDLINE-doppel.guest=testguest doppel.dirtytest.rounds=50}
bash boot/build.sh "$out/kernel.elf" "$out"
ls -l "$out"/doppel.bin "$out"/doppel.iso | awk '{print "image:", $NF, $5, "bytes"}'
