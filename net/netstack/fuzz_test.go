package netstack

import (
	"context"
	"testing"
	"time"

	"github.com/doppel-ft/doppel/net/linktest"
)

// FuzzReceiveFrame sends arbitrary frames from the wire to a stack (as a
// NIC would hand them up) and checks the stack survives them and still
// carries a TCP connection afterwards.
func FuzzReceiveFrame(f *testing.F) {
	eth := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2}
	f.Add(append(append([]byte{}, eth...), 0x08, 0x00, 0x45, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 10, 9, 0, 2, 10, 9, 0, 1))
	f.Add(append(append([]byte{}, eth...), 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1))
	f.Add(append(append([]byte{}, eth...), 0x88, 0xb5))
	f.Add([]byte{1, 2, 3})
	a, b, _, eb := pair(f, linktest.Config{})
	l, err := a.Listen(addrA)
	if err != nil {
		f.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) > 1514 {
			frame = frame[:1514]
		}
		eb.Transmit(frame) // refused sizes are the NIC's business
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := b.Dial(ctx, addrA)
		if err != nil {
			t.Fatalf("stack no longer accepts connections after frame %x: %v", frame, err)
		}
		c.Close()
	})
}
