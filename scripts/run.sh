#!/usr/bin/env bash
# run.sh boots build/doppel.iso in the best emulator present, with doppel's
# serial console on this terminal:
#   1. QEMU with KVM and nested VMX (-cpu host,+vmx), when /dev/kvm works and
#      the host CPU has VMX: the fast path, like a real server.
#   2. QEMU with KVM and nested SVM (-cpu host), when /dev/kvm works and the
#      host CPU is an AMD one with nested SVM on.
#   3. QEMU TCG with AMD-V emulated (-cpu max: SVM with nested paging), when
#      no KVM is usable: the default dirty-page test guest runs its 50 rounds
#      in about 14 s of wall time there against about 30 s under Bochs
#      (qemu-test TestQEMUDirtySVM and TestBochsDirtySVM, boot included,
#      measured side by side on the 2-core CI machine, 2026-12-02).
#   4. Bochs with an Intel CPU model (VT-x with EPT emulated), when QEMU is
#      missing: slow but exact. DOPPEL_EMU=bochs picks it anyway.
# DOPPEL_CMDLINE replaces the image's boot flags (by default the ISO runs the
# EPT dirty-tracking test guest; DOPPEL_CMDLINE= gives the shell).
# Leave Bochs with Ctrl-] (socat's escape), QEMU with Ctrl-A X.
set -euo pipefail
cd "$(dirname "$0")/.."
iso=build/doppel.iso
[ -f "$iso" ] || { echo "run: $iso missing: make image" >&2; exit 1; }

nested_vmx() {
  [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
  grep -qw vmx /proc/cpuinfo || return 1
  local p=/sys/module/kvm_intel/parameters/nested
  [ -r $p ] && grep -qE '^(Y|1)' $p
}

if nested_vmx; then
  echo "run: QEMU/KVM with nested VMX"
  exec qemu-system-x86_64 -enable-kvm -cpu host,+vmx -smp 2 -m 4G \
    -kernel build/doppel.bin \
    -append "${DOPPEL_CMDLINE-doppel.guest=testguest doppel.dirtytest.rounds=50}" \
    -initrd "build/testguest.bin testguest" \
    -nographic -no-reboot
fi

nested_svm() {
  [ -r /dev/kvm ] && [ -w /dev/kvm ] || return 1
  grep -qw svm /proc/cpuinfo || return 1
  local p=/sys/module/kvm_amd/parameters/nested
  [ -r $p ] && grep -qE '^(Y|1)' $p
}

qemu_svm() {
  local accel=$1 cpu=$2
  exec qemu-system-x86_64 $accel -cpu "$cpu" -smp 2 -m 4G \
    -kernel build/doppel.bin \
    -append "${DOPPEL_CMDLINE-doppel.guest=testguest doppel.dirtytest.rounds=50}" \
    -initrd "build/testguest.bin testguest" \
    -nographic -no-reboot
}

if [ "${DOPPEL_EMU:-}" != bochs ]; then
  if nested_svm; then
    echo "run: QEMU/KVM with nested SVM (AMD-V)"
    qemu_svm -enable-kvm host
  fi
  if command -v qemu-system-x86_64 >/dev/null; then
    echo "run: no usable KVM here; QEMU TCG with AMD-V emulated (-cpu max: SVM + nested paging),"
    echo "run: picked over Bochs because the default guest's 50 dirty rounds take ~14 s here against ~30 s in Bochs"
    echo "run: the serial console follows; Ctrl-A X leaves"
    qemu_svm "" max
  fi
fi

echo "run: no usable KVM with nested VMX here; booting in Bochs (Intel model, VT-x+EPT emulated)"
echo "run: the serial console follows; Ctrl-] leaves"
port=$(( 20000 + RANDOM % 20000 ))
dir=$(mktemp -d)
if [ -n "${DOPPEL_CMDLINE+set}" ]; then
  bash scripts/mkiso.sh "$dir/boot.iso" build/doppel.bin "$DOPPEL_CMDLINE" build/testguest.bin testguest
  iso=$dir/boot.iso
fi
bash scripts/bochsrc.sh "$(realpath "$iso")" "$port" 2 1024 > "$dir/bochsrc"
echo c > "$dir/continue"
bochs -q -f "$dir/bochsrc" -rc "$dir/continue" > build/bochs-run.log 2>&1 &
bochs_pid=$!
trap 'kill $bochs_pid 2>/dev/null; rm -rf "$dir"' EXIT
socat -,raw,echo=0,escape=0x1d TCP:127.0.0.1:"$port",retry=50,interval=0.2
