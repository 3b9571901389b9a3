package pagediff

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

// page returns a PageSize page of pseudo-random bytes.
func page(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	p := make([]byte, PageSize)
	for i := range p {
		p[i] = byte(r.Uint32())
	}
	return p
}

// withWords returns a copy of p with the given words bit-flipped.
func withWords(p []byte, words ...int) []byte {
	q := bytes.Clone(p)
	for _, w := range words {
		q[w*WordSize+3] ^= 0x5a
	}
	return q
}

func run(first, count int, data []byte) []byte {
	b := binary.LittleEndian.AppendUint16(nil, uint16(first))
	b = binary.LittleEndian.AppendUint16(b, uint16(count))
	return append(b, data...)
}

func TestDeltaTable(t *testing.T) {
	prev := page(1)
	tests := []struct {
		name  string
		words []int
		runs  [][2]int // first, count
	}{
		{"unchanged", nil, nil},
		{"first word", []int{0}, [][2]int{{0, 1}}},
		{"last word", []int{511}, [][2]int{{511, 1}}},
		{"adjacent pair", []int{7, 8}, [][2]int{{7, 2}}},
		{"gap of one not merged", []int{7, 9}, [][2]int{{7, 1}, {9, 1}}},
		{"run across bitmap word", []int{62, 63, 64, 65}, [][2]int{{62, 4}}},
		{"ends", []int{0, 1, 510, 511}, [][2]int{{0, 2}, {510, 2}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cur := withWords(prev, tc.words...)
			var want []byte
			for _, r := range tc.runs {
				want = append(want, run(r[0], r[1], cur[r[0]*8:(r[0]+r[1])*8])...)
			}
			got := AppendDelta(nil, prev, cur)
			if !bytes.Equal(got, want) {
				t.Fatalf("AppendDelta = %x, want %x", got, want)
			}
			if n := DeltaSize(prev, cur); n != len(want) {
				t.Errorf("DeltaSize = %d, want %d", n, len(want))
			}
			if n := CountDiffWords(prev, cur); n != len(tc.words) {
				t.Errorf("CountDiffWords = %d, want %d", n, len(tc.words))
			}
			p := bytes.Clone(prev)
			if err := ApplyDelta(p, got); err != nil || !bytes.Equal(p, cur) {
				t.Errorf("ApplyDelta: err %v, page equal %v", err, bytes.Equal(p, cur))
			}
			p = bytes.Clone(prev)
			if n := Apply(p, cur); n != len(tc.words) || !bytes.Equal(p, cur) {
				t.Errorf("Apply = %d, want %d; page equal %v", n, len(tc.words), bytes.Equal(p, cur))
			}
		})
	}
}

func TestApplyDeltaMalformed(t *testing.T) {
	w := make([]byte, 8)
	tests := []struct {
		name  string
		delta []byte
	}{
		{"short header", []byte{1, 0, 1}},
		{"zero count", run(3, 0, nil)},
		{"truncated data", run(3, 2, w)},
		{"past end", run(511, 2, append(w, w...))},
		{"first past end", run(512, 1, w)},
		{"overlap", append(run(3, 2, append(w, w...)), run(4, 1, w)...)},
		{"unsorted", append(run(5, 1, w), run(4, 1, w)...)},
		{"good then truncated", append(run(5, 1, w), 9)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := page(2)
			orig := bytes.Clone(p)
			err := ApplyDelta(p, tc.delta)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if !bytes.Equal(p, orig) {
				t.Fatal("page modified by malformed delta")
			}
		})
	}
	// Adjacent runs are valid, though AppendDelta never emits them.
	p := make([]byte, PageSize)
	d := append(run(3, 1, []byte{1, 0, 0, 0, 0, 0, 0, 0}), run(4, 1, []byte{2, 0, 0, 0, 0, 0, 0, 0})...)
	if err := ApplyDelta(p, d); err != nil || p[24] != 1 || p[32] != 2 {
		t.Fatalf("adjacent runs: err %v", err)
	}
}

func TestIsZero(t *testing.T) {
	for _, n := range []int{0, 8, 16, 24, 32, 64, 4096, 4104} {
		p := make([]byte, n)
		if !IsZero(p) {
			t.Errorf("IsZero(zero %d) = false", n)
		}
		for i := 0; i < n; i++ {
			p[i] = 0x80
			if IsZero(p) {
				t.Fatalf("IsZero(len %d, byte %d set) = true", n, i)
			}
			p[i] = 0
		}
	}
}

// TestDiffer checks that a Differ sizes and encodes exactly as DeltaSize
// and AppendDelta do, under every implementation, without allocating, and
// that Append refuses a page Size was not given.
func TestDiffer(t *testing.T) {
	prev := page(9)
	pairs := [][]byte{prev, withWords(prev, 0), withWords(prev, 1, 2, 3, 511), withWords(prev, 63, 64, 200), page(10)}
	forEachArch(t, func(t *testing.T, a arch) {
		saved := impl
		defer func() { impl = saved }()
		impl = a
		var d Differ
		for i, cur := range pairs {
			if got, want := d.Size(prev, cur), DeltaSize(prev, cur); got != want {
				t.Fatalf("pair %d: Size = %d, DeltaSize = %d", i, got, want)
			}
			if got, want := d.Append([]byte("x"), cur), AppendDelta([]byte("x"), prev, cur); !bytes.Equal(got, want) {
				t.Fatalf("pair %d: Append differs from AppendDelta", i)
			}
		}
		cur, buf := pairs[2], make([]byte, 0, PageSize)
		if n := testing.AllocsPerRun(100, func() { d.Size(prev, cur); buf = d.Append(buf[:0], cur) }); n != 0 {
			t.Errorf("Size+Append allocate %v times a page", n)
		}
	})
	defer func() {
		if recover() == nil {
			t.Error("Append of a page Size was not given did not panic")
		}
	}()
	var d Differ
	d.Size(prev, pairs[1])
	d.Append(nil, bytes.Clone(pairs[1]))
}
