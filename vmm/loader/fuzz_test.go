package loader

import (
	"errors"
	"testing"
)

// seeds are well-formed images of each kind for the fuzzers to mutate.
func seeds() [][]byte {
	seg := []elfSeg{{0x100000, 0x100000, make([]byte, 64), 0x2000}}
	return [][]byte{
		testBzImage(defaultBzOpts()),
		testMB1Kludge(0x40, mb1PageAlign|mb1MemInfo, 0x100000, 0x2000, 0x1000, 0x80),
		testELF(elfClass32, 0x100010, seg, mb1HeaderBytes(mb1MemInfo)),
		testELF(elfClass64, 0x100010, seg, mb2HeaderBytes(mb2Tag(mb2TagEntry, 0, 0x100020))),
		append(mb2HeaderBytes(
			mb2Tag(mb2TagInfoRequest, 0, mb2InfoCmdline),
			mb2Tag(mb2TagAddress, 0, 0x100000, 0x100000, 0, 0x103000),
			mb2Tag(mb2TagEntry, 0, 0x100040)), make([]byte, 0x1000)...),
	}
}

var allErrors = []error{ErrUnknownFormat, ErrTruncated, ErrChecksum, ErrCorrupt, ErrUnsupported, ErrTooBig, ErrOverlap, ErrBadLayout}

func knownError(err error) bool {
	for _, e := range allErrors {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func FuzzDetect(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, image []byte) {
		kind, err := Detect(image)
		if err != nil {
			if !knownError(err) {
				t.Fatalf("Detect error %v wraps none of the loader's errors", err)
			}
			return
		}
		if kind < KindBzImage || kind > KindELF32 {
			t.Fatalf("Detect = %v without error", kind)
		}
	})
}

// fuzzRAM is the guest memory FuzzLoad reuses across inputs.
const fuzzRAM = 32 << 20

var fuzzMem = make(Flat, fuzzRAM)

func FuzzLoad(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s, "console=ttyS0", []byte("initrd"))
	}
	l := NewPCLayout(fuzzRAM)
	f.Fuzz(func(t *testing.T, image []byte, cmdline string, initrd []byte) {
		s, kind, err := Load(fuzzMem, Config{Layout: l, Kernel: image, Cmdline: cmdline, Initrd: initrd,
			Modules: []Module{{Data: initrd, Cmdline: cmdline}}[:min(1, int(kind0(image)))]})
		if err != nil {
			if !knownError(err) {
				t.Fatalf("Load error %v wraps none of the loader's errors", err)
			}
			return
		}
		if !l.IsRAM(s.RIP, 1) {
			t.Fatalf("%v loaded with entry %#x outside RAM", kind, s.RIP)
		}
		if s.Mode != Long64 && s.Mode != Protected32 {
			t.Fatalf("mode %v", s.Mode)
		}
	})
}

// kind0 is 1 for a multiboot image (which then gets a module too), else 0.
func kind0(image []byte) int {
	k, _ := Detect(image)
	if k == KindMultiboot1 || k == KindMultiboot2 {
		return 1
	}
	return 0
}
