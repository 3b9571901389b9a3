// Package bytesize parses and formats byte counts the way people write
// them on command lines: plain bytes ("4096"), or a number with a unit
// ("256m", "256M", "256MB", "256MiB", "1g", "1GiB"). Units are powers of
// 1024 whatever the spelling: a memory size of "1GB" means 1 GiB here, as
// it does for QEMU's -m and Linux's mem=. It imports only the standard
// library so that every tool and the kernel's boot flags can share it.
package bytesize

import (
	"errors"
	"fmt"
	"strings"
)

// Forms describes the accepted syntax, for error and usage messages.
const Forms = "plain bytes (4096, 4096B) or a number with a unit K, M, G, T, optionally followed by B or iB, in either case (256m, 256M, 256MB, 256MiB, 1g, 1GiB)"

// ErrSyntax is wrapped by every Parse error.
var ErrSyntax = errors.New("bytesize: bad size")

// units maps a unit letter to its power of 1024 as a shift.
var units = map[byte]uint{'k': 10, 'm': 20, 'g': 30, 't': 40}

// Parse returns the byte count s stands for. An error names s and the
// accepted forms and wraps ErrSyntax.
func Parse(s string) (uint64, error) {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s; want %s", ErrSyntax, s, why, Forms)
	}
	num := s
	var shift uint
	// Strip an optional "B" or "iB" after a unit letter, then the letter.
	// Only ASCII letters are folded, so lower has s's length and byte
	// offsets (strings.ToLower may change it: "İ" grows).
	lower := asciiLower(s)
	switch {
	case strings.HasSuffix(lower, "ib"):
		num = s[:len(s)-2]
		if len(num) == 0 || units[lower[len(num)-1]] == 0 {
			return 0, bad("iB needs a unit letter before it")
		}
	case strings.HasSuffix(lower, "b"):
		num = s[:len(s)-1] // "12B" is 12 bytes, "12KB" 12 KiB
	}
	if n := len(num); n > 0 {
		if sh, ok := units[lower[n-1]]; ok {
			shift, num = sh, num[:n-1]
		}
	}
	if num == "" {
		return 0, bad("no digits")
	}
	var n uint64
	for i := 0; i < len(num); i++ {
		c := num[i]
		if c < '0' || c > '9' {
			return 0, bad("not a whole number")
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, bad("overflows 64 bits")
		}
		n = n*10 + d
	}
	if n > (1<<64-1)>>shift {
		return 0, bad("overflows 64 bits")
	}
	return n << shift, nil
}

// Format renders n in the largest unit that divides it exactly (1G, 512M,
// 4096): Parse(Format(n)) == n.
func Format(n uint64) string {
	for _, u := range []struct {
		shift  uint
		suffix string
	}{{40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", n>>u.shift, u.suffix)
		}
	}
	return fmt.Sprint(n)
}

// asciiLower folds ASCII capitals and leaves every other byte alone.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
