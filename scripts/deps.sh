#!/usr/bin/env bash
# deps.sh installs what building and testing doppel needs, if it is missing:
# the freestanding toolchain for boot/, GRUB (BIOS and UEFI) and xorriso for
# the ISO, QEMU, OVMF and Bochs for the emulator tests, socat for an interactive serial console,
# iasl (acpica-tools) to check the ACPI tables, and
# the Go modules. It is idempotent and quiet when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

# command -> Debian package
declare -A want=(
  [gcc]=gcc [as]=binutils [ld]=binutils [objcopy]=binutils
  [grub-mkrescue]=grub-common [xorriso]=xorriso [mformat]=mtools
  [qemu-system-x86_64]=qemu-system-x86 [bochs]=bochs [socat]=socat
  [iasl]=acpica-tools
)
missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
# GRUB's BIOS and EFI modules, OVMF and Bochs's BIOS images are data, not
# commands.
[ -d /usr/lib/grub/i386-pc ] || missing+=(grub-pc-bin)
[ -d /usr/lib/grub/x86_64-efi ] || missing+=(grub-efi-amd64-bin)
[ -f /usr/share/ovmf/OVMF.fd ] || missing+=(ovmf)
[ -f /usr/share/bochs/BIOS-bochs-latest ] || missing+=(bochsbios)
[ -f /usr/share/vgabios/vgabios.bin ] || missing+=(vgabios)
# Bochs needs one display plugin package; the terminal one is the smallest
# (doppel runs Bochs with its built-in rfb display, never shown).
command -v bochs >/dev/null 2>&1 || missing+=(bochs-term)

if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  echo "deps: installing $pkgs"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q >/dev/null
  # shellcheck disable=SC2086
  $sudo apt-get install -y -q --no-install-recommends $pkgs >/dev/null
fi

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then
    echo "deps: go is at /usr/local/go/bin; add it to PATH" >&2
  else
    echo "deps: Go 1.26 or later is needed (https://go.dev/dl)" >&2
  fi
  exit 1
fi
go mod download
