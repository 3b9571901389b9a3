package lapic

import (
	"sync"

	"github.com/doppel-ft/doppel/vmm/devices"
)

// Router delivers interrupt messages to a set of LAPICs: it is the
// devices.MessageSink of the IOAPIC, of MSI-capable devices and of every
// LAPIC's IPIs.
//
// Destinations (SDM Vol. 3A 11.6.2): physical matches the APIC ID, with
// 0xFF and 0xFFFFFFFF broadcasts (0xFF also in x2APIC mode, as the
// IOAPIC's broadcast; no vCPU has ID 255); logical matches each
// LAPIC's LDR in the flat or cluster model its DFR selects (x2APIC:
// cluster in bits 31:16, member mask in 15:0); the shorthands self, all
// and all-but-self of an IPI use Message.Source. Lowest-priority delivery
// goes to the first matching LAPIC in the order they were added (the
// lowest-numbered match), which the SDM allows as a model-specific
// arbitration.
//
// Locking: Router is safe for concurrent use. Its LAPIC list is
// copy-on-write under a mutex held only to add or snapshot it; Deliver
// then calls each LAPIC, whose own mutex guards its matching and accept.
// No lock is held across two LAPICs, and LAPICs send IPIs only after
// releasing their own mutex, so vCPUs on different threads may send IPIs
// to each other at the same time.
type Router struct {
	mu     sync.Mutex
	lapics []*LAPIC
}

// NewRouter returns a Router over no LAPICs; Add them as they are built
// (each LAPIC's Config.Sink is usually this Router).
func NewRouter() *Router { return &Router{} }

// Add appends l to the LAPICs messages can reach.
func (r *Router) Add(l *LAPIC) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := make([]*LAPIC, len(r.lapics), len(r.lapics)+1)
	copy(next, r.lapics)
	r.lapics = append(next, l)
}

// Deliver sends m to every LAPIC it addresses (devices.MessageSink).
func (r *Router) Deliver(m devices.Message) {
	r.mu.Lock()
	lapics := r.lapics
	r.mu.Unlock()
	for _, l := range lapics {
		if !r.addresses(l, m) {
			continue
		}
		l.Deliver(m)
		if m.Mode == devices.DeliveryLowestPriority {
			return
		}
	}
}

func (r *Router) addresses(l *LAPIC, m devices.Message) bool {
	switch m.Shorthand {
	case ShorthandSelf:
		return l.ID() == m.Source
	case ShorthandAll:
		return true
	case ShorthandAllButSelf:
		return l.ID() != m.Source
	}
	return l.matches(m.Dest, m.DestLogical)
}
