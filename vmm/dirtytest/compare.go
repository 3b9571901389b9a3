package dirtytest

import (
	"fmt"
	"strings"

	"github.com/doppel-ft/doppel/ept"
)

// Result compares one round's harvest with what the guest wrote.
type Result struct {
	Pages int // distinct pages the model wrote
	// Missed are written pages the harvest did not report: never allowed.
	Missed []uint64
	// Extra are reported pages nobody wrote in the guest's own window
	// (stack, code): allowed.
	Extra []uint64
	// Unexpected are reported pages outside the window nobody wrote.
	Unexpected []uint64
	// ReportDiffers: the guest's PAGE reports disagree with the model.
	ReportDiffers string
}

// OK reports an exact round.
func (r Result) OK() bool {
	return len(r.Missed) == 0 && len(r.Unexpected) == 0 && r.ReportDiffers == ""
}

func (r Result) String() string {
	var s []string
	s = append(s, fmt.Sprintf("pages=%d", r.Pages))
	if len(r.Missed) > 0 {
		s = append(s, fmt.Sprintf("missed=%d [%s]", len(r.Missed), hexList(r.Missed)))
	}
	if len(r.Unexpected) > 0 {
		s = append(s, fmt.Sprintf("unexpected=%d [%s]", len(r.Unexpected), hexList(r.Unexpected)))
	}
	if r.ReportDiffers != "" {
		s = append(s, "guest-report: "+r.ReportDiffers)
	}
	s = append(s, fmt.Sprintf("extra=%d", len(r.Extra)))
	return strings.Join(s, " ")
}

// Compare checks a round: model are the writes the guest should have made,
// reported the pages it reported (nreports PAGE writes, doneN the count it
// sent with DONE), harvest what the dirty source found.
func Compare(model []Write, frames uint64, reported *ept.Bitmap, doneN, nreports uint32, harvest *ept.Bitmap) Result {
	want := ept.NewBitmap(frames)
	for _, w := range model {
		want.Set(uint64(w.Page))
	}
	var r Result
	r.Pages = want.Count()
	switch {
	case int(nreports) != len(model) || doneN != nreports:
		r.ReportDiffers = fmt.Sprintf("%d reports, DONE says %d, model makes %d writes", nreports, doneN, len(model))
	case reported.AndNot(want).Count() != 0 || want.AndNot(reported).Count() != 0:
		r.ReportDiffers = "reported pages differ from the model's"
	}
	r.Missed = want.AndNot(harvest).Slice()
	harvest.AndNot(want).ForEach(func(gfn uint64) bool {
		if InWindow(gfn) {
			r.Extra = append(r.Extra, gfn)
		} else {
			r.Unexpected = append(r.Unexpected, gfn)
		}
		return true
	})
	return r
}
