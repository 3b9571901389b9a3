package pagediff

import (
	"bytes"
	"errors"
	"testing"
)

// refDecode is an independent reference decoder for the delta format: it
// reads byte by byte and returns the page after applying delta to page, or
// ok=false if the delta is malformed.
func refDecode(page, delta []byte) (out []byte, ok bool) {
	out = bytes.Clone(page)
	end := 0 // first word a later run may start at
	for i := 0; i < len(delta); {
		if i+4 > len(delta) {
			return nil, false
		}
		first := int(delta[i]) | int(delta[i+1])<<8
		count := int(delta[i+2]) | int(delta[i+3])<<8
		i += 4
		if count == 0 || first < end || first+count > PageSize/8 || i+8*count > len(delta) {
			return nil, false
		}
		for k := 0; k < 8*count; k++ {
			out[8*first+k] = delta[i+k]
		}
		i += 8 * count
		end = first + count
	}
	return out, true
}

func FuzzApplyDelta(f *testing.F) {
	w := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	f.Add(uint64(1), []byte{})
	f.Add(uint64(2), run(0, 1, w))
	f.Add(uint64(3), append(run(3, 1, w), run(4, 1, w)...))
	f.Add(uint64(4), append(run(5, 1, w), run(4, 1, w)...))
	f.Add(uint64(5), run(511, 2, append(w, w...)))
	f.Add(uint64(6), run(2, 0, nil))
	f.Add(uint64(7), AppendDelta(nil, page(1), withWords(page(1), 0, 1, 2, 100, 511)))
	f.Fuzz(func(t *testing.T, seed uint64, delta []byte) {
		p := page(seed % 16)
		orig := bytes.Clone(p)
		want, ok := refDecode(p, delta)
		err := ApplyDelta(p, delta)
		switch {
		case ok && err != nil:
			t.Fatalf("ApplyDelta rejected a valid delta: %v", err)
		case ok && !bytes.Equal(p, want):
			t.Fatal("ApplyDelta result differs from the reference decoder")
		case !ok && !errors.Is(err, ErrMalformed):
			t.Fatalf("ApplyDelta accepted a malformed delta (err %v)", err)
		case !ok && !bytes.Equal(p, orig):
			t.Fatal("ApplyDelta modified the page for a malformed delta")
		}
	})
}

// FuzzRoundTrip builds cur from prev by XORing edits (3 bytes each: u16
// byte offset, value) and checks AppendDelta/ApplyDelta, DeltaSize,
// CountDiffWords and Apply under every implementation.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint64(0), []byte{})
	f.Add(uint64(1), []byte{0, 0, 1})
	f.Add(uint64(2), []byte{0xf8, 0x0f, 0x80, 0x07, 0x00, 0x01})
	f.Add(uint64(3), []byte{0xf8, 0x01, 1, 0x00, 0x02, 1, 0x08, 0x02, 1})
	f.Fuzz(func(t *testing.T, seed uint64, edits []byte) {
		prev := page(seed % 16)
		if seed&16 != 0 {
			clear(prev)
		}
		cur := bytes.Clone(prev)
		for ; len(edits) >= 3; edits = edits[3:] {
			cur[(int(edits[0])|int(edits[1])<<8)%PageSize] ^= edits[2]
		}
		saved := impl
		defer func() { impl = saved }()
		impl = portable
		wantN := CountDiffWords(prev, cur)
		wantDelta := AppendDelta(nil, prev, cur)
		if len(wantDelta) != 4*countRuns(prev, cur)+8*wantN {
			t.Fatalf("delta is %d bytes, not minimal", len(wantDelta))
		}
		for _, a := range archs() {
			impl = a
			delta := AppendDelta([]byte("prefix"), prev, cur)
			if !bytes.Equal(delta[6:], wantDelta) || string(delta[:6]) != "prefix" {
				t.Fatalf("%s: AppendDelta differs from generic", a.name)
			}
			if n := DeltaSize(prev, cur); n != len(wantDelta) {
				t.Fatalf("%s: DeltaSize = %d, want %d", a.name, n, len(wantDelta))
			}
			if n := CountDiffWords(prev, cur); n != wantN {
				t.Fatalf("%s: CountDiffWords = %d, want %d", a.name, n, wantN)
			}
			p := bytes.Clone(prev)
			if err := ApplyDelta(p, delta[6:]); err != nil || !bytes.Equal(p, cur) {
				t.Fatalf("%s: ApplyDelta: err %v, equal %v", a.name, err, bytes.Equal(p, cur))
			}
			p = bytes.Clone(prev)
			if n := Apply(p, cur); n != wantN || !bytes.Equal(p, cur) {
				t.Fatalf("%s: Apply = %d, want %d; equal %v", a.name, n, wantN, bytes.Equal(p, cur))
			}
			if IsZero(cur) != (bytes.Count(cur, []byte{0}) == PageSize) {
				t.Fatalf("%s: IsZero wrong", a.name)
			}
		}
	})
}

// countRuns counts maximal runs of differing words, word by word.
func countRuns(a, b []byte) int {
	runs, in := 0, false
	for i := 0; i < len(a); i += 8 {
		d := !bytes.Equal(a[i:i+8], b[i:i+8])
		if d && !in {
			runs++
		}
		in = d
	}
	return runs
}
