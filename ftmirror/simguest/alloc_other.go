//go:build !linux

package simguest

// Alloc returns n zeroed bytes.
func Alloc(n int) []byte { return make([]byte, n) }
