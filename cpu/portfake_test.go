package cpu

import (
	"reflect"
	"testing"
)

var _ Ports = (*PortFake)(nil)

func TestPortFake(t *testing.T) {
	tests := []struct {
		name string
		read func(port uint16, size int) uint32
		do   func(p Ports) []uint32
		want []PortAccess
		got  []uint32
	}{
		{
			name: "floating bus reads all ones",
			do: func(p Ports) []uint32 {
				return []uint32{uint32(p.In8(0x80)), uint32(p.In16(0x80)), p.In32(0x80)}
			},
			want: []PortAccess{
				{Port: 0x80, Size: 1, Value: 0xff},
				{Port: 0x80, Size: 2, Value: 0xffff},
				{Port: 0x80, Size: 4, Value: 0xffffffff},
			},
			got: []uint32{0xff, 0xffff, 0xffffffff},
		},
		{
			name: "reads are truncated to the access width",
			read: func(port uint16, size int) uint32 { return 0x12345678 + uint32(port) },
			do: func(p Ports) []uint32 {
				return []uint32{uint32(p.In8(0x3f8)), uint32(p.In16(0xcfc)), p.In32(0xcfc)}
			},
			want: []PortAccess{
				{Port: 0x3f8, Size: 1, Value: 0x70},
				{Port: 0xcfc, Size: 2, Value: 0x6374},
				{Port: 0xcfc, Size: 4, Value: 0x12346374},
			},
			got: []uint32{0x70, 0x6374, 0x12346374},
		},
		{
			name: "writes are recorded in order",
			do: func(p Ports) []uint32 {
				p.Out8(0x3f8+3, 0x80)
				p.Out16(0x1f0, 0xbeef)
				p.Out32(0xcf8, 0x80000000)
				return nil
			},
			want: []PortAccess{
				{Write: true, Port: 0x3fb, Size: 1, Value: 0x80},
				{Write: true, Port: 0x1f0, Size: 2, Value: 0xbeef},
				{Write: true, Port: 0xcf8, Size: 4, Value: 0x80000000},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &PortFake{Read: tt.read}
			got := tt.do(f)
			if !reflect.DeepEqual(got, tt.got) {
				t.Errorf("values read = %#x, want %#x", got, tt.got)
			}
			if acc := f.Accesses(); !reflect.DeepEqual(acc, tt.want) {
				t.Errorf("accesses = %v, want %v", acc, tt.want)
			}
		})
	}
}

func TestPortFakeWriteHook(t *testing.T) {
	// A fake scratch register: what is written is read back.
	var scratch uint32
	f := &PortFake{
		Read:  func(uint16, int) uint32 { return scratch },
		Write: func(_ uint16, _ int, v uint32) { scratch = v },
	}
	f.Out8(0x3ff, 0xa5)
	if got := f.In8(0x3ff); got != 0xa5 {
		t.Fatalf("read back %#x, want 0xa5", got)
	}
	if s := f.Accesses()[0].String(); s != "out8 0x03ff 0xa5" {
		t.Errorf("String() = %q", s)
	}
}
