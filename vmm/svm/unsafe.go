package svm

import "unsafe"

// unsafeBytes views a table page as bytes (same memory, same size).
func unsafeBytes(p *[512]uint64) unsafe.Pointer { return unsafe.Pointer(p) }
