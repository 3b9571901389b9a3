//go:build !amd64

package xstate

// Without amd64 Supported is false and Round is never called.

func ymmSpin(pattern *[16 * 32]byte, iters uint64) (lost uint32) { return 0 }

func zmmSpin(pattern *[16 * 64]byte, masks *[7]uint16, iters uint64) (lost uint32) { return 0 }
