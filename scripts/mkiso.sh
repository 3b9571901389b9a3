#!/usr/bin/env bash
# mkiso.sh OUT.iso KERNEL.bin "CMDLINE" [MODULE.bin NAME]...
# builds a GRUB ISO, bootable under BIOS and (with grub-efi-amd64-bin
# installed, see deps.sh) UEFI, that boots KERNEL with multiboot2, the given
# command line and modules (each passed with its NAME as the module's command
# line; a NAME with spaces is the file's name, then the rest of the module's
# command line), GRUB itself speaking on COM1 at 115200. Used by the emulator tests to
# boot the same image with different flags.
set -euo pipefail
out=$1 kernel=$2 cmdline=$3
shift 3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/boot/grub"
cp "$kernel" "$dir/boot/doppel.bin"
mods=""
while [ $# -ge 2 ]; do
  name=${2%% *} # NAME may go on with the module's arguments: "vmlinuz console=ttyS0"
  cp "$1" "$dir/boot/$name"
  mods+="  module2 /boot/$name $2"$'\n'
  shift 2
done
cat > "$dir/boot/grub/grub.cfg" <<CFG
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=0
menuentry "doppel" {
  multiboot2 /boot/doppel.bin $cmdline
$mods  boot
}
menuentry "doppel (reboot on fatal errors)" {
  multiboot2 /boot/doppel.bin doppel.fatal=reboot $cmdline
$mods  boot
}
CFG
grub-mkrescue -o "$out" "$dir" >/dev/null 2>&1 || {
  echo "mkiso: grub-mkrescue failed (grub-pc-bin, grub-efi-amd64-bin, xorriso, mtools installed?)" >&2
  grub-mkrescue -o "$out" "$dir"
  exit 1
}
