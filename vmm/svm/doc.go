// Package svm is doppel's AMD-V (SVM) vendor layer: capability probe and
// report, the VMCB, VMRUN and #VMEXIT, the exit dispatch, ASIDs and nested
// page tables (ept with Options.Nested).
package svm
