package ftmirror

import (
	"net"
	"testing"

	"github.com/doppel-ft/doppel/ftmirror/simguest"
)

// Groups are compressed when that pays and sent as they are when not: a
// guest whose memory compresses has its groups sent compressed and fewer
// bytes on the wire, one whose memory is random saves little and stops
// trying for a while after a group that did not pay; every codec mirrors
// and fails over exactly (the rig checks memory and output).
func TestMirrorEachCompression(t *testing.T) {
	for _, tc := range []struct {
		c            Compression
		compressible bool
	}{{CompressZstd, true}, {CompressZstd, false}, {CompressS2, true}, {CompressOff, true}} {
		c, compressible := tc.c, tc.compressible
		name := c.String() + map[bool]string{true: "/compressible", false: "/random"}[compressible]
		t.Run(name, func(t *testing.T) {
			r := newRigGuest(t, 256, func(p *simguest.Params) { p.Compressible = compressible },
				func(cfg *Config) { cfg.Compression = c; cfg.GroupBytes = 32 << 10 }, nil, nil)
			pc, sc := net.Pipe()
			perr, serr := r.serve(pc, sc)
			r.waitEpoch(10)
			pc.Close()
			r.stopGuest()
			<-perr
			<-serr
			r.takeover()
			s := r.p.Stats.Summary()
			t.Logf("%s: %d groups, %d tried, %d compressed, %d -> %d bytes", s.Compression, s.Groups, s.GroupsTried, s.GroupsCompressed, s.GroupRawBytes, s.GroupWireBytes)
			if s.Compression != c.String() || s.Groups == 0 {
				t.Fatalf("summary %+v", s)
			}
			switch {
			case c == CompressOff:
				if s.GroupsTried != 0 || s.GroupWireBytes != s.GroupRawBytes {
					t.Errorf("compression off, yet %d groups tried", s.GroupsTried)
				}
			case compressible:
				// The sync's groups are full pages and compress.
				if s.GroupsCompressed == 0 || s.GroupWireBytes > s.GroupRawBytes*3/4 {
					t.Errorf("compressible guest: %d of %d groups compressed, %d -> %d bytes", s.GroupsCompressed, s.Groups, s.GroupRawBytes, s.GroupWireBytes)
				}
			default:
				// Only small groups (deltas: record headers) may pay.
				if s.GroupWireBytes < s.GroupRawBytes*85/100 {
					t.Errorf("random memory compressed: %d -> %d bytes", s.GroupRawBytes, s.GroupWireBytes)
				}
				if s.GroupsTried == s.Groups && s.Groups > 2 {
					t.Errorf("every group tried after failures: no backoff")
				}
			}
		})
	}
}
