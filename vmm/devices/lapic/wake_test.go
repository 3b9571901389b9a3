package lapic

import (
	"testing"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// TestWakePending: NMI and INIT, what ends a halt with interrupts off,
// show in WakePending until taken, and a SIPI after INIT; a fixed
// interrupt does not.
func TestWakePending(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  devices.Message
		want bool
		take func(l *LAPIC) bool
	}{
		{"fixed", devices.Message{Mode: devices.DeliveryFixed, Vector: 0x40}, false, nil},
		{"NMI", devices.Message{Mode: devices.DeliveryNMI}, true, (*LAPIC).TakeNMI},
		{"INIT", devices.Message{Mode: devices.DeliveryINIT}, true, (*LAPIC).TakeINIT},
		{"SIPI", devices.Message{Mode: devices.DeliveryINIT}, true, func(l *LAPIC) bool { _, ok := l.TakeSIPI(); return ok }},
	} {
		l, _, _, _ := newTest(1)
		enable(l)
		if l.WakePending() {
			t.Fatalf("%s: wake pending before any message", tc.name)
		}
		l.Deliver(tc.msg)
		if tc.name == "SIPI" {
			l.TakeINIT()
			l.Deliver(devices.Message{Mode: devices.DeliveryStartup, Vector: 0x9A})
		}
		if got := l.WakePending(); got != tc.want {
			t.Errorf("%s: WakePending = %v, want %v", tc.name, got, tc.want)
		}
		if got := l.WakePending(); got != tc.want {
			t.Errorf("%s: WakePending took the event", tc.name)
		}
		if tc.take != nil {
			if !tc.take(l) {
				t.Errorf("%s: not taken", tc.name)
			}
			if l.WakePending() {
				t.Errorf("%s: still pending after it was taken", tc.name)
			}
		}
	}
}
