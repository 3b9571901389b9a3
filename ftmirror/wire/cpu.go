package wire

import (
	"runtime"

	"golang.org/x/sys/cpu"
)

// fastGMAC reports whether Go's AES-GCM runs on instructions here (its
// own test: AES-NI and PCLMULQDQ on amd64, the AES and PMULL extensions
// on arm64); elsewhere it is portable table code.
func fastGMAC() bool {
	switch runtime.GOARCH {
	case "amd64":
		return cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ
	case "arm64":
		return cpu.ARM64.HasAES && cpu.ARM64.HasPMULL
	}
	return false
}
