package xstate

// ymmSpin loads YMM0-YMM15 from pattern, counts iters down and returns a
// bit for each register whose 256 bits no longer equal its pattern.
//
//go:noescape
func ymmSpin(pattern *[16 * 32]byte, iters uint64) (lost uint32)

// zmmSpin is ymmSpin for ZMM16-ZMM31 and K1-K7: bit n of lost is
// ZMM(16+n), bit 16+n is K(n+1).
//
//go:noescape
func zmmSpin(pattern *[16 * 64]byte, masks *[7]uint16, iters uint64) (lost uint32)
