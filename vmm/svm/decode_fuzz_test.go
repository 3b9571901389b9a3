package svm

import (
	"errors"
	"testing"
)

// FuzzDecodeAt feeds guest-controlled bytes and RIPs to the decoder: it
// must never panic, and a decoded length must be 1-15 bytes and lie in
// guest memory; everything else is an ErrDecode.
func FuzzDecodeAt(f *testing.F) {
	f.Add([]byte{0x0F, 0xA2}, uint64(0), uint16(0xC9B))
	f.Add([]byte{0xF4}, uint64(0xFFF), uint16(0xC9B))
	f.Add([]byte{0x66, 0x67, 0xF3, 0x0F}, uint64(0x1FFE), uint16(0x09B))
	f.Add([]byte{0x48, 0x8B, 0x04, 0x25, 0, 0, 0, 0}, uint64(4), uint16(0xA9B))
	f.Fuzz(func(t *testing.T, code []byte, rip uint64, csAttr uint16) {
		mem := make([]byte, 8192)
		copy(mem, code)
		var page [512]uint64
		v := &VCPU{VMCB: NewVMCB(&page)}
		v.VMCB.SetSegment(SaveCS, Segment{Attrib: csAttr, Limit: 0xFFFF_FFFF})
		v.VMCB.Set64(SaveEFER, EFER_SVME|EFER_LMA)
		v.ReadGuest = func(gpa uint64, b []byte) error {
			if gpa >= uint64(len(mem)) || uint64(len(mem))-gpa < uint64(len(b)) {
				return errors.New("beyond guest RAM")
			}
			copy(b, mem[gpa:])
			return nil
		}
		inst, err := v.DecodeAt(rip % 9000)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error %v is not an ErrDecode", err)
			}
			return
		}
		if inst.Len < 1 || inst.Len > maxInstrLen || rip%9000+uint64(inst.Len) > uint64(len(mem)) {
			t.Fatalf("decoded length %d at %#x", inst.Len, rip%9000)
		}
	})
}
