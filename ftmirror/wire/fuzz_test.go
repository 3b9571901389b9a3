package wire

import (
	"bytes"
	"testing"
)

// FuzzDecodeFrame feeds arbitrary bytes to the frame decoder (raw, and as the
// payload of an authentic frame so the payload parsers are reached too). It
// must never panic, and a frame it accepts must decode to exactly the bytes
// that were sealed.
func FuzzDecodeFrame(f *testing.F) {
	tx, _ := pair(f)
	var g GroupWriter
	g.Reset(Start(nil), 0)
	g.Zero(1)
	copy(g.Full(2), bytes.Repeat([]byte{3}, PageSize))
	g.Delta(3, func(b []byte) []byte { return append(b, 0, 0, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8) })
	g.Finish()
	grp, _ := tx.Seal(g.Buf, TGroup, 1)
	end := (&End{Groups: 1, Pages: 3, OutEnd: 3, Out: []byte("out"), Blobs: []Blob{{ID: 1, Data: []byte("s")}}}).Append(nil)
	for _, seed := range [][]byte{grp, end, (Hello{Role: 1}).Append(nil), AppendU64(nil, 5), {}} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	dz, err := NewDecompressor()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, asPayload bool) {
		tx, rx := pair(t)
		frame := data
		if asPayload {
			if len(data) > MaxPayload {
				return
			}
			frame, _ = tx.Append(nil, TGroup, 9, data)
		}
		fr, err := rx.Open(frame)
		if err != nil {
			if asPayload {
				t.Fatalf("authentic frame refused: %v", err)
			}
			return
		}
		if asPayload && !bytes.Equal(fr.Payload, data) {
			t.Fatalf("payload changed")
		}
		ParseGroup(fr.Payload, 1<<20, nil)
		ParseEnd(fr.Payload)
		ParseHello(fr.Payload)
		ParseU64(fr.Payload)
		if raw, err := dz.GroupZ(nil, fr.Payload); err == nil {
			ParseGroup(raw, 1<<20, nil)
		}
	})
}
