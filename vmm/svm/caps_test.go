package svm

import (
	"errors"
	"strings"
	"testing"
)

// fakeCPU answers CPUID and RDMSR from tables.
type fakeCPU struct {
	leaves map[uint32][4]uint32
	msrs   map[uint32]uint64
	read   []uint32 // MSRs read, to check none is read without SVM
}

func (f *fakeCPU) cpuid(leaf, _ uint32) (a, b, c, d uint32) {
	r := f.leaves[leaf]
	return r[0], r[1], r[2], r[3]
}

func (f *fakeCPU) rdmsr(m uint32) uint64 { f.read = append(f.read, m); return f.msrs[m] }

// Fn8000_000A_EDX of QEMU 7.2 TCG -cpu max: NPT only; of a Zen 2 EPYC.
const (
	edxQEMUTCG = 1 << FeatNP
	edxZen2    = 1<<FeatNP | 1<<FeatLbrVirt | 1<<FeatSVML | 1<<FeatNRIPS | 1<<FeatTscRateMsr |
		1<<FeatVmcbClean | 1<<FeatFlushByAsid | 1<<FeatDecodeAssists | 1<<FeatPauseFilter | 1<<FeatPauseThresh | 1<<FeatAVIC
)

func svmCPU(edx, nasid uint32, vmcr uint64) *fakeCPU {
	return &fakeCPU{
		leaves: map[uint32][4]uint32{
			0x8000_0000: {0x8000_001F},
			0x8000_0001: {0, 0, 1 << CPUID_80000001_ECX_SVM, 0},
			0x8000_000A: {1, nasid, 0, edx},
		},
		msrs: map[uint32]uint64{MSR_VM_CR: vmcr},
	}
}

func TestCaps(t *testing.T) {
	noSVM := &fakeCPU{leaves: map[uint32][4]uint32{0x8000_0000: {0x8000_0008}, 0x8000_0001: {0, 0, 0x1, 0}}}
	for _, c := range []struct {
		name     string
		cpu      *fakeCPU
		usable   error // nil or the sentinel
		report   []string
		decoding bool // the report says doppel decodes instructions
	}{
		{"no SVM", noSVM, ErrNoSVM, []string{"svm: no AMD-V: CPUID Fn8000_0001_ECX[2] SVM=0"}, false},
		{"QEMU TCG", svmCPU(edxQEMUTCG, 16, 0), nil, []string{"NPT yes, NRIP save no, decode assists no", "svm: usable"}, true},
		{"Zen 2", svmCPU(edxZen2, 32768, VM_CR_LOCK), nil, []string{"AVIC yes", "SVMDIS=0 LOCK=1", "next RIP from the CPU (NRIP save)"}, false},
		{"BIOS off, locked", svmCPU(edxZen2, 32768, VM_CR_LOCK|VM_CR_SVMDIS), ErrSVMDisabled,
			[]string{"SVMDIS=1 LOCK=1: firmware disabled SVM and locked it", "not usable: AMD-V disabled by firmware (VM_CR.SVMDIS=1, VM_CR.LOCK=1)"}, false},
		{"off, unlocked", svmCPU(edxZen2, 32768, VM_CR_SVMDIS), ErrSVMDisabled, []string{"SVMDIS=1, unlocked"}, false},
		{"no NPT", svmCPU(1<<FeatNRIPS, 64, 0), ErrNoNPT, []string{"NPT no", "not usable: no nested paging"}, false},
		{"one ASID", svmCPU(edxQEMUTCG, 1, 0), ErrNoASID, []string{"NASID=1"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			caps := ReadCaps(c.cpu.cpuid, c.cpu.rdmsr)
			if !caps.SVM && len(c.cpu.read) != 0 {
				t.Errorf("read MSRs %x without SVM", c.cpu.read)
			}
			err := caps.Features().Usable()
			if !errors.Is(err, c.usable) || (c.usable == nil) != (err == nil) {
				t.Errorf("Usable: %v, want %v", err, c.usable)
			}
			rep := strings.Join(caps.Report(), "\n")
			for _, w := range c.report {
				if !strings.Contains(rep, w) {
					t.Errorf("report lacks %q:\n%s", w, rep)
				}
			}
			if got := strings.Contains(rep, "lengths decoded by doppel"); got != c.decoding {
				t.Errorf("report says decoding=%v, want %v:\n%s", got, c.decoding, rep)
			}
		})
	}
}
