//go:build race

package ft

// raceBuild: the race detector slows the stack about tenfold.
const raceBuild = true
