#!/usr/bin/env bash
# run.sh boots doppel in the best emulator present, with doppel's serial
# console on this terminal, and says which it picked and why:
#   1. QEMU with KVM and nested VMX (-cpu host,+vmx), when /dev/kvm works and
#      the host CPU has VMX with nested on: the fast path, like a real server.
#   2. QEMU with KVM and nested SVM (-cpu host), when /dev/kvm works and the
#      host CPU is an AMD one with nested SVM on.
#   3. QEMU TCG with AMD-V emulated (-cpu max: SVM with nested paging), when
#      no KVM is usable. It is faster than Bochs for the guests doppel runs
#      (qemu-test, side by side on the 2-core CI machine, 2026-12-02): the
#      default dirty-page test guest's 50 rounds in about 14 s of wall time
#      against about 30 s in Bochs (TestQEMUDirtySVM, TestBochsDirtySVM), and
#      the Linux guest to its shell in 24 s (1 vCPU) and 34 s (2 vCPUs)
#      against 91 s and 268 s in Bochs (TestQEMUSVMLinux[SMP] and
#      TestBochsLinux[SMP] in one run, load average 12).
#   4. Bochs with an Intel CPU model (VT-x with EPT emulated), when QEMU is
#      missing, or asked for: slow but exact, and the VT-x path.
# EMU=bochs (make run EMU=bochs; DOPPEL_EMU=bochs too) forces Bochs, EMU=qemu
# QEMU (with KVM if usable, else TCG).
# DOPPEL_CMDLINE replaces the image's boot flags (by default the ISO runs the
# EPT dirty-tracking test guest; DOPPEL_CMDLINE= gives the shell); the ISO
# then built carries the same modules (testguest, and the Linux guest's
# vmlinuz and initramfs when built).
# Leave Bochs with Ctrl-] (socat's escape), QEMU with Ctrl-A X.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/doppel.iso ] || { echo "run: build/doppel.iso missing: make image" >&2; exit 1; }

# DOPPEL_QEMU names another QEMU binary (scripts/qemu.sh installs Debian
# 13's beside the system's).
qemu_bin=${DOPPEL_QEMU:-qemu-system-x86_64}

emu=${EMU:-${DOPPEL_EMU:-}}
case "$emu" in
  "" | bochs | qemu) ;;
  *) echo "run: EMU=$emu: want bochs or qemu (or nothing: the best present)" >&2; exit 2 ;;
esac

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# The ISO to boot: build/doppel.iso, or one with DOPPEL_CMDLINE's flags.
iso=build/doppel.iso
if [ -n "${DOPPEL_CMDLINE+set}" ]; then
  mods=(build/testguest.bin testguest)
  if [ -f build/vmlinuz ] && [ -f build/initramfs.cpio ]; then
    mods+=(build/vmlinuz "vmlinuz console=ttyS0" build/initramfs.cpio initramfs)
  fi
  bash scripts/mkiso.sh "$dir/boot.iso" build/doppel.bin "$DOPPEL_CMDLINE" "${mods[@]}"
  iso=$dir/boot.iso
fi

# kvm_reason says why KVM cannot run doppel here (empty: it can).
kvm_reason() {
  if [ ! -e /dev/kvm ]; then echo "no /dev/kvm"; return; fi
  if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then echo "/dev/kvm not read-writable"; return; fi
  if grep -qw vmx /proc/cpuinfo; then
    grep -qE '^(Y|1)' /sys/module/kvm_intel/parameters/nested 2>/dev/null && return
    echo "kvm_intel without nested VMX"; return
  fi
  if grep -qw svm /proc/cpuinfo; then
    grep -qE '^(Y|1)' /sys/module/kvm_amd/parameters/nested 2>/dev/null && return
    echo "kvm_amd without nested SVM"; return
  fi
  echo "the host CPU shows neither VMX nor SVM"
}

# qemu boots the ISO with the given accelerator and CPU flags and ends the
# script with QEMU (the debug-exit device ends it with the guest's status).
qemu() {
  echo "run: $("$qemu_bin" --version | head -1)"
  echo "run: the serial console follows; Ctrl-A X leaves"
  local rc=0
  "$qemu_bin" "$@" -smp 2 -m 4G -cdrom "$iso" -boot d -nographic -no-reboot \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 || rc=$?
  exit $rc
}

if [ "$emu" != bochs ] && command -v "$qemu_bin" >/dev/null; then
  why=$(kvm_reason)
  if [ -z "$why" ] && grep -qw vmx /proc/cpuinfo; then
    echo "run: QEMU/KVM with nested VMX (doppel runs its guest under VT-x)"
    qemu -enable-kvm -cpu host,+vmx
  elif [ -z "$why" ]; then
    echo "run: QEMU/KVM with nested SVM (doppel runs its guest under AMD-V)"
    qemu -enable-kvm -cpu host
  fi
  echo "run: no usable KVM ($why): QEMU TCG with AMD-V emulated (-cpu max: SVM + nested paging)"
  echo "run: picked over Bochs (VT-x), which is slower here: the dirty test's 50 rounds ~14 s vs ~30 s,"
  echo "run: the Linux guest to its shell ~24-34 s vs ~91-268 s (1-2 vCPUs); EMU=bochs picks Bochs"
  qemu -cpu max
fi

if [ "$emu" = qemu ]; then
  echo "run: EMU=qemu but qemu-system-x86_64 is missing (make deps installs it)" >&2
  exit 1
fi
if [ "$emu" = bochs ]; then
  echo "run: EMU=bochs: Bochs (Intel model, VT-x+EPT emulated)"
else
  echo "run: no QEMU: Bochs (Intel model, VT-x+EPT emulated)"
fi
echo "run: the serial console follows; Ctrl-] leaves"
port=$(( 20000 + RANDOM % 20000 ))
bash scripts/bochsrc.sh "$(realpath "$iso")" "$port" 2 1024 > "$dir/bochsrc"
echo c > "$dir/continue"
bochs -q -f "$dir/bochsrc" -rc "$dir/continue" > build/bochs-run.log 2>&1 &
bochs_pid=$!
trap 'kill $bochs_pid 2>/dev/null; rm -rf "$dir"' EXIT
socat -,raw,echo=0,escape=0x1d TCP:127.0.0.1:"$port",retry=50,interval=0.2
