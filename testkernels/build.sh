#!/usr/bin/env bash
# build.sh OUTDIR builds the multiboot test kernels into OUTDIR (both
# include com1.S, their serial output routines):
#   testkernel.bin  flat multiboot1 image (a.out-kludge fields), load 1 MiB
#   testkernel.elf  the same as an ELF32 file (for inspection)
#   ftticks.bin     numbered lines and memory writes forever (FT tests)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
obj=$(mktemp -d)
trap 'rm -rf "$obj"' EXIT
gcc -m32 -I "$here" -c -o "$obj/mbtest.o" "$here/mbtest.S"
ld -m elf_i386 -nostdlib -static -z noexecstack --no-warn-rwx-segments \
  -T "$here/link.ld" -o "$out/testkernel.elf" "$obj/mbtest.o"
objcopy -O binary "$out/testkernel.elf" "$out/testkernel.bin"
gcc -m32 -I "$here" -c -o "$obj/ftticks.o" "$here/ftticks.S"
ld -m elf_i386 -nostdlib -static -z noexecstack --no-warn-rwx-segments \
  -T "$here/link.ld" -o "$out/ftticks.elf" "$obj/ftticks.o"
objcopy -O binary "$out/ftticks.elf" "$out/ftticks.bin"
