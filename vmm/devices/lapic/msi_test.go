package lapic

import (
	"reflect"
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices"
)

func TestMSI(t *testing.T) {
	for _, tc := range []struct {
		addr uint64
		data uint32
		want devices.Message
		ok   bool
	}{
		// Linux's usual MSI: physical destination 1, fixed, edge.
		{0xFEE01000, 0x0041, devices.Message{Dest: 1, Vector: 0x41}, true},
		{0xFEEFF00C, 0x8122, devices.Message{Dest: 0xFF, DestLogical: true, Vector: 0x22, Mode: devices.DeliveryLowestPriority, Level: true}, true},
		{0xFEE00000, 0x0400, devices.Message{Mode: devices.DeliveryNMI}, true},
		{0xFED00000, 0x41, devices.Message{}, false},
		{1<<32 | 0xFEE00000, 0x41, devices.Message{}, false},
	} {
		got, err := MSI(tc.addr, tc.data)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("MSI(%#x, %#x) = %+v, %v; want %+v, ok %v", tc.addr, tc.data, got, err, tc.want, tc.ok)
		}
	}
	// Through the Router to the addressed LAPIC.
	r, ls := machine(t, 2)
	m, err := MSI(0xFEE01000, 0x51)
	if err != nil {
		t.Fatal(err)
	}
	r.Deliver(m)
	if got := pendingSet(ls, 0x51); !reflect.DeepEqual(got, []int{1}) {
		t.Errorf("MSI to APIC 1 reached %v", got)
	}
}
