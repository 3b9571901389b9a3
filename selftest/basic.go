package selftest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"runtime"
	"strings"
	"time"
)

// pingPong bounces a counter between two goroutines over unbuffered
// channels: each hop is a park and a wake-up through the scheduler (and,
// with several Ps, futex wake-ups across threads).
func pingPong(ctx context.Context, cfg *Config) error {
	const rounds = 20000
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
		close(pong)
	}()
	start := time.Now()
	v := 0
	for i := 0; i < rounds; i++ {
		select {
		case ping <- v:
		case <-ctx.Done():
			return fmt.Errorf("stuck sending round %d: %w", i, ctx.Err())
		}
		select {
		case v = <-pong:
		case <-ctx.Done():
			return fmt.Errorf("stuck receiving round %d: %w", i, ctx.Err())
		}
	}
	close(ping)
	if _, open := <-pong; open {
		return fmt.Errorf("partner goroutine sent after close")
	}
	if v != rounds {
		return fmt.Errorf("counter %d after %d rounds", v, rounds)
	}
	cfg.logf("ping-pong: %d round trips, %v each", rounds, time.Since(start)/rounds)
	return nil
}

// sha256Vectors are known answers from FIPS 180-2, Appendix B.
var sha256Vectors = []struct {
	in   string
	want string
}{
	{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		"248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
	{strings.Repeat("a", 1000000), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"},
}

// cryptoKAT checks sha256 against known answers (the assembly SHA paths the
// CPU's features select) and that crypto/rand (getrandom, RDRAND in the
// layer) returns data that is neither constant nor repeated.
func cryptoKAT(ctx context.Context, cfg *Config) error {
	for _, v := range sha256Vectors {
		sum := sha256.Sum256([]byte(v.in))
		if got := hex.EncodeToString(sum[:]); got != v.want {
			return fmt.Errorf("sha256 of %d bytes = %s, want %s", len(v.in), got, v.want)
		}
	}
	var a, b [32]byte
	if _, err := rand.Read(a[:]); err != nil {
		return fmt.Errorf("crypto/rand: %w", err)
	}
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("crypto/rand: %w", err)
	}
	for _, r := range [][]byte{a[:], b[:]} {
		if bytes.Count(r, r[:1]) == len(r) {
			return fmt.Errorf("crypto/rand returned %d copies of %#x", len(r), r[0])
		}
	}
	if a == b {
		return fmt.Errorf("crypto/rand returned the same 32 bytes twice: %x", a)
	}
	return nil
}

// nilPointer is a package variable so the compiler cannot prove it nil and
// must emit a real load.
var nilPointer *[64]int

//go:noinline
func loadThroughNil(i int) int { return nilPointer[i] }

// nilDeref checks that a load from page 0 faults and that the fault comes
// back as an ordinary, recoverable Go runtime error (the layer turns #PF
// into SIGSEGV).
func nilDeref(ctx context.Context, cfg *Config) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			err = fmt.Errorf("loading through a nil pointer did not panic")
			return
		}
		re, ok := r.(runtime.Error)
		if !ok {
			err = fmt.Errorf("recovered %T %v, want a runtime.Error", r, r)
			return
		}
		if !strings.Contains(re.Error(), "nil pointer dereference") {
			err = fmt.Errorf("recovered %q, want a nil pointer dereference", re.Error())
		}
	}()
	loadThroughNil(7)
	return nil
}
