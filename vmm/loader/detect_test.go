package loader

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestDetect(t *testing.T) {
	elf32 := testELF(elfClass32, 0x100000, []elfSeg{{0x100000, 0x100000, make([]byte, 16), 16}}, nil)
	elf64 := testELF(elfClass64, 0x100000, []elfSeg{{0x100000, 0x100000, make([]byte, 16), 16}}, nil)
	mb1ELF := testELF(elfClass32, 0x100000, []elfSeg{{0x100000, 0x100000, make([]byte, 16), 16}}, mb1HeaderBytes(mb1MemInfo))
	mb2ELF := testELF(elfClass64, 0x100000, []elfSeg{{0x100000, 0x100000, make([]byte, 16), 16}}, mb2HeaderBytes())
	both := append(mb1HeaderBytes(0), make([]byte, 4)...) // mb2 wins, as with GRUB's multiboot2
	both = append(both, mb2HeaderBytes()...)
	badSum := mb1HeaderBytes(0)
	badSum[8]++
	badSum2 := mb2HeaderBytes()
	badSum2[12]++
	mb1Unknown := mb1HeaderBytes(1 << 5)
	mb1Cut := mb1HeaderBytes(mb1AoutKludge)
	mb2Cut := mb2HeaderBytes()[:12]
	mb2Arch := mb2HeaderBytes()
	binary.LittleEndian.PutUint32(mb2Arch[4:], 4) // MIPS
	binary.LittleEndian.PutUint32(mb2Arch[12:], -(mb2Magic + 4 + uint32(len(mb2Arch))))
	mb2FB := mb2HeaderBytes(mb2Tag(mb2TagFramebuffer, 0, 1024, 768, 32))
	mb2FBOpt := mb2HeaderBytes(mb2Tag(mb2TagFramebuffer, mb2TagOptional, 1024, 768, 32))
	mb2Unknown := mb2HeaderBytes(mb2Tag(42, 0))
	mb2BadTag := mb2HeaderBytes(mb2Tag(mb2TagEntry, 0, 0x100000))
	binary.LittleEndian.PutUint32(mb2BadTag[16+4:], 200) // tag size past the header
	bz := testBzImage(defaultBzOpts())
	bzCut := bz[:0x300]
	bzFlag := append([]byte(nil), bz...)
	bzFlag[bootFlagOff] = 0
	misaligned := append(make([]byte, 2), mb1HeaderBytes(0)...)

	for _, tc := range []struct {
		name string
		img  []byte
		want Kind
		err  error
	}{
		{"bzImage", bz, KindBzImage, nil},
		{"multiboot1 ELF", mb1ELF, KindMultiboot1, nil},
		{"multiboot2 ELF", mb2ELF, KindMultiboot2, nil},
		{"multiboot1 and 2", both, KindMultiboot2, nil},
		{"multiboot2 optional framebuffer", mb2FBOpt, KindMultiboot2, nil},
		{"ELF32", elf32, KindELF32, nil},
		{"ELF64", elf64, KindELF64, nil},
		{"empty", nil, 0, ErrUnknownFormat},
		{"text", []byte("hello, world, this is not a kernel"), 0, ErrUnknownFormat},
		{"misaligned multiboot1", misaligned, 0, ErrUnknownFormat},
		{"multiboot1 bad checksum", badSum, 0, ErrChecksum},
		{"multiboot2 bad checksum", badSum2, 0, ErrChecksum},
		{"multiboot1 unknown required flag", mb1Unknown, 0, ErrUnsupported},
		{"multiboot1 address fields cut", mb1Cut, 0, ErrTruncated},
		{"multiboot2 header cut", mb2Cut, 0, ErrTruncated},
		{"multiboot2 MIPS", mb2Arch, 0, ErrUnsupported},
		{"multiboot2 required framebuffer", mb2FB, 0, ErrUnsupported},
		{"multiboot2 unknown required tag", mb2Unknown, 0, ErrUnsupported},
		{"multiboot2 tag size", mb2BadTag, 0, ErrCorrupt},
		{"bzImage cut", bzCut, 0, ErrTruncated},
		{"bzImage boot flag", bzFlag, 0, ErrCorrupt},
		{"ELF class", []byte("\x7fELF\x07"), 0, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Detect(tc.img)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Detect = %v, %v; want error %v", got, err, tc.err)
				}
				t.Logf("error: %v", err)
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Detect = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
