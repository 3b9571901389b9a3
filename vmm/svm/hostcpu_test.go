package svm

import (
	"encoding/binary"
	"testing"
)

// hypervisorCPUID answers leaf 0x40000000 with sig (12 bytes) and every
// other leaf with zeros.
func hypervisorCPUID(sig string) func(leaf, subleaf uint32) (uint32, uint32, uint32, uint32) {
	return func(leaf, _ uint32) (uint32, uint32, uint32, uint32) {
		if leaf != 0x4000_0000 || len(sig) != 12 {
			return 0, 0, 0, 0
		}
		b := []byte(sig)
		return 0x4000_0001, binary.LittleEndian.Uint32(b[0:]), binary.LittleEndian.Uint32(b[4:]), binary.LittleEndian.Uint32(b[8:])
	}
}

func TestHypervisorSignature(t *testing.T) {
	for _, sig := range []string{SignatureQEMUTCG, "KVMKVMKVM\x00\x00\x00", "AMDisbetter!"} {
		if got := HypervisorSignature(hypervisorCPUID(sig)); got != sig {
			t.Errorf("HypervisorSignature = %q, want %q", got, sig)
		}
	}
}

func TestPlaceVCPUs(t *testing.T) {
	tcg, kvm, bare := hypervisorCPUID(SignatureQEMUTCG), hypervisorCPUID("KVMKVMKVM\x00\x00\x00"), hypervisorCPUID("")
	for _, tc := range []struct {
		name   string
		policy string
		ncpu   int
		cpuid  func(uint32, uint32) (uint32, uint32, uint32, uint32)
		avoid  bool
		cpus   []int // host CPU of vCPU 0, 1, 2
	}{
		{"auto under TCG", CPU0Auto, 2, tcg, true, []int{1, 1, 1}},
		{"auto under TCG, 3 CPUs", CPU0Auto, 3, tcg, true, []int{1, 2, 1}},
		{"auto under TCG, one CPU", CPU0Auto, 1, tcg, false, []int{0, 0, 0}},
		{"auto under KVM", CPU0Auto, 2, kvm, false, []int{0, 1, 0}},
		{"auto on bare metal", CPU0Auto, 4, bare, false, []int{0, 1, 2}},
		{"avoid on bare metal", CPU0Avoid, 4, bare, true, []int{1, 2, 3}},
		{"use under TCG", CPU0Use, 2, tcg, false, []int{0, 1, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := PlaceVCPUs(tc.policy, tc.ncpu, tc.cpuid)
			if err != nil {
				t.Fatal(err)
			}
			if p.AvoidCPU0 != tc.avoid || p.Reason == "" {
				t.Errorf("PlaceVCPUs = %+v, want AvoidCPU0 %v and a reason", p, tc.avoid)
			}
			for i, want := range tc.cpus {
				if got := p.CPU(i, tc.ncpu); got != want {
					t.Errorf("vCPU %d on CPU %d, want %d", i, got, want)
				}
			}
			wantN := tc.ncpu
			if tc.avoid {
				wantN--
			}
			if got := p.HostCPUs(tc.ncpu); got != wantN {
				t.Errorf("HostCPUs = %d, want %d", got, wantN)
			}
		})
	}
	if _, err := PlaceVCPUs("never", 2, tcg); err == nil {
		t.Error("PlaceVCPUs accepted policy \"never\"")
	}
}
