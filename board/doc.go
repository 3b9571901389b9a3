// Package board describes the machine doppel runs on, as the boot layer
// presents it (boot/CONTRACT.md): the boot flags, the CPU's identity and
// virtualization features, the firmware memory map with the layer's
// carve-outs, the multiboot modules, the CPU list, and power control.
//
// Every parser here is pure Go over an io.Reader and is table-tested with
// files in testdata/. The functions that read the live files return
// fs.ErrNotExist-wrapped errors on a Linux host, where /proc/doppel/* does
// not exist; OnBareMetal tells the two apart.
//
// The CPU report follows the Intel SDM Vol. 2A chapter 3 (CPUID) and Vol. 3C
// section 24.7 (IA32_FEATURE_CONTROL and enabling VMX); SVM presence follows
// the AMD APM Vol. 3, Appendix E.
package board
