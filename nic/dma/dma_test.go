package dma

import (
	"errors"
	"math/rand"
	"testing"
)

func TestAllocAlignmentAndBounds(t *testing.T) {
	r, err := NewHost(0x100000, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ size, align uint64 }{
		{100, 0}, {4096, 4096}, {16, 16}, {2048, 128}, {1, 1}, {8192, 4096},
	}
	var got []Buffer
	for _, tc := range tests {
		b, err := r.Alloc(tc.size, tc.align)
		if err != nil {
			t.Fatalf("Alloc(%d, %d): %v", tc.size, tc.align, err)
		}
		align := tc.align
		if align == 0 {
			align = 64
		}
		if b.PA%align != 0 || uint64(len(b.Mem)) != tc.size {
			t.Errorf("Alloc(%d, %d) = %#x len %d", tc.size, tc.align, b.PA, len(b.Mem))
		}
		for _, o := range got {
			if b.PA < o.PA+uint64(len(o.Mem)) && o.PA < b.PA+uint64(len(b.Mem)) {
				t.Errorf("%#x+%d overlaps %#x+%d", b.PA, len(b.Mem), o.PA, len(o.Mem))
			}
		}
		for i := range b.Mem {
			b.Mem[i] = 0xAA
		}
		got = append(got, b)
	}
	if _, err := r.Alloc(1<<20, 0); !errors.Is(err, ErrNoMemory) {
		t.Errorf("oversized Alloc: %v, want ErrNoMemory", err)
	}
	if _, err := r.Alloc(10, 3); err == nil {
		t.Error("alignment 3 accepted")
	}
	for _, b := range got {
		if err := r.Free(b); err != nil {
			t.Fatal(err)
		}
	}
	if r.FreeBytes() != 64<<10 {
		t.Errorf("after freeing everything %d bytes free", r.FreeBytes())
	}
	b, err := r.Alloc(64<<10, 4096)
	if err != nil {
		t.Fatalf("whole region after coalescing: %v", err)
	}
	for _, x := range b.Mem {
		if x != 0 {
			t.Fatal("reused memory not zeroed")
		}
	}
}

func TestFreeRejectsBadBuffers(t *testing.T) {
	r, _ := NewHost(0x1000, 16<<10)
	b, _ := r.Alloc(1024, 0)
	if err := r.Free(b); err != nil {
		t.Fatal(err)
	}
	if err := r.Free(b); err == nil {
		t.Error("double free accepted")
	}
	if err := r.Free(Buffer{PA: 0x100000, Mem: make([]byte, 10)}); err == nil {
		t.Error("foreign buffer accepted")
	}
	if r.FreeBytes() != 16<<10 {
		t.Errorf("free bytes %d after rejected frees", r.FreeBytes())
	}
}

func TestRandomAllocFree(t *testing.T) {
	r, _ := NewHost(0x200000, 1<<20)
	rng := rand.New(rand.NewSource(1))
	var live []Buffer
	for i := 0; i < 5000; i++ {
		if len(live) > 0 && rng.Intn(2) == 0 {
			j := rng.Intn(len(live))
			if err := r.Free(live[j]); err != nil {
				t.Fatal(err)
			}
			live = append(live[:j], live[j+1:]...)
			continue
		}
		b, err := r.Alloc(uint64(1+rng.Intn(8192)), 1<<rng.Intn(13))
		if errors.Is(err, ErrNoMemory) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		live = append(live, b)
	}
	var used uint64
	for _, b := range live {
		used += uint64(len(b.Mem))
	}
	if used+r.FreeBytes() != 1<<20 {
		t.Errorf("used %d + free %d != %d", used, r.FreeBytes(), 1<<20)
	}
}
