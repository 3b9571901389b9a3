package ftmirror

import (
	"fmt"
	"io"
	"testing"
)

// endingLink records how a session ended its link.
type endingLink struct {
	io.ReadWriter
	closed, aborted int
}

func (l *endingLink) Close() error { l.closed++; return nil }

type abortableLink struct{ endingLink }

func (l *abortableLink) Abort() error { l.aborted++; return nil }

// TestFailEndsTheLink: a session that fails closes its link, except that
// one whose peer is lost aborts a link that can abort (Aborter), so that
// nothing goes on resending to the dead peer; it ends the link once.
func TestFailEndsTheLink(t *testing.T) {
	for _, tc := range []struct {
		name            string
		abortable       bool
		err             error
		closed, aborted int
	}{
		{"peer lost, abortable", true, fmt.Errorf("%w: silent for 40ms", ErrPeerLost), 0, 1},
		{"peer closed, abortable", true, linkError("secondary", io.EOF), 0, 1},
		{"protocol error, abortable", true, fmt.Errorf("%w: bad frame", ErrProtocol), 1, 0},
		{"fenced, abortable", true, ErrFenced, 1, 0},
		{"peer lost, plain", false, fmt.Errorf("%w: silent for 40ms", ErrPeerLost), 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var link io.ReadWriteCloser
			var rec *endingLink
			if tc.abortable {
				a := &abortableLink{}
				link, rec = a, &a.endingLink
			} else {
				rec = &endingLink{}
				link = rec
			}
			s := &session{rw: link, done: make(chan struct{})}
			s.fail(tc.err)
			s.fail(fmt.Errorf("%w: a second failure", ErrPeerLost))
			if rec.closed != tc.closed || rec.aborted != tc.aborted {
				t.Errorf("closed %d, aborted %d times; want %d, %d", rec.closed, rec.aborted, tc.closed, tc.aborted)
			}
			if s.failed() != tc.err {
				t.Errorf("session error %v, want %v", s.failed(), tc.err)
			}
		})
	}
}
