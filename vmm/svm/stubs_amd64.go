package svm

import "github.com/doppel-ft/doppel/vmm"

// svmrun is in svm_amd64.s.
//
//go:noescape
func svmrun(vmcb, hostSave uint64, regs *vmm.Regs, fx *vmm.FXState)
