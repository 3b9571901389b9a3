package nictest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/nic"
)

// Driver is what CloseDuringTraffic needs of a NIC driver.
type Driver interface {
	Transmit(frame []byte) error
	Service() // what the interrupt goroutine and the watchdog run
	Close() error
}

// CloseDuringTraffic checks a driver's Close while a transmit loop and a
// service loop (the device model receiving a frame through inject before
// each pass) run, beside the driver's own goroutines (its watchdog, which
// a caller should run at a short period so that it is looking too): Close
// must return only once none of them uses the rings, and none may touch
// them afterwards, so that the next Open may reuse the DMA memory at once. mem is all of the driver's DMA memory; it is
// overwritten with 0xFF right after Close, as a reuse would (every
// descriptor "done", every index garbage, to a driver that still looked):
// -race flags a pass still running, and the check after flags a late
// write. frame is a frame of 100 bytes to send.
func CloseDuringTraffic(t testing.TB, d Driver, mem []byte, inject func(), frame []byte) {
	t.Helper()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			if err := d.Transmit(frame); errors.Is(err, nic.ErrClosed) {
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				inject()
				d.Service()
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	d.Close()
	for i := range mem {
		mem[i] = 0xFF
	}
	d.Service()
	if err := d.Transmit(frame); !errors.Is(err, nic.ErrClosed) {
		t.Errorf("Transmit after Close: %v, want ErrClosed", err)
	}
	close(stop)
	wg.Wait()
	for i, b := range mem {
		if b != 0xFF {
			t.Fatalf("DMA memory written at %#x after Close", i)
		}
	}
}
