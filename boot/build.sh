#!/usr/bin/env bash
# build.sh GO_KERNEL_ELF OUTDIR builds the boot layer around a Go kernel:
#   OUTDIR/doppel.bin  flat multiboot1+2 image loaded at 1 MiB (qemu -kernel)
#   OUTDIR/doppel.iso  GRUB (BIOS and UEFI) ISO booting doppel.bin with multiboot2,
#                      GRUB on the serial console, timeout 0
# The Go kernel must be linked with the flags in boot/goldflags.
# DOPPEL_CMDLINE sets the ISO's kernel command line (default empty); if
# OUTDIR/testguest.bin exists it is added as the module "testguest".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)/layer
[ $# -eq 2 ] || { echo "usage: $0 GO_KERNEL_ELF OUTDIR" >&2; exit 2; }
elf=$(realpath "$1")
out=$(mkdir -p "$2" && cd "$2" && pwd)
obj="$out/boot-obj"
rm -rf "$obj" && mkdir -p "$obj"

CFLAGS="-std=gnu11 -O2 -Wall -Wextra -Wno-unused-parameter -ffreestanding -fno-builtin
  -nostdlib -fno-pic -fno-pie -mcmodel=small -mno-red-zone -mgeneral-regs-only
  -fno-stack-protector -fno-asynchronous-unwind-tables -fcf-protection=none
  -fno-omit-frame-pointer -I$here"
for f in "$here"/*.c; do
  gcc $CFLAGS -c "$f" -o "$obj/$(basename "${f%.c}").o"
done
for f in "$here"/*.S; do
  gcc -I"$here" -DGOELF="\"$elf\"" -c "$f" -o "$obj/$(basename "${f%.S}").S.o"
done
ld -nostdlib -static -z noexecstack -z max-page-size=4096 --no-warn-rwx-segments \
  -T "$here/link.ld" -o "$out/doppel.elf" "$obj"/*.o
objcopy -O binary "$out/doppel.elf" "$out/doppel.bin"

# The ISO is made the same way as the emulator tests make theirs.
mods=()
[ -f "$out/testguest.bin" ] && mods=("$out/testguest.bin" testguest)
bash "$here/../../scripts/mkiso.sh" "$out/doppel.iso" "$out/doppel.bin" "${DOPPEL_CMDLINE:-}" "${mods[@]}"
