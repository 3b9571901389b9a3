package mgmt

import "time"

// Status is what /status serves (JSON) and /metrics exports.
type Status struct {
	Node           string  `json:"node"`
	Role           string  `json:"role"`  // primary, secondary, promoted, none
	Peer           string  `json:"peer"`  // the FT link's peer address
	Epoch          uint64  `json:"epoch"` // last captured (primary) or committed (secondary) epoch
	Checkpoints    uint64  `json:"checkpoints"`
	CheckpointRate float64 `json:"checkpoint_rate_hz"` // over the last 10 s
	PauseP50ms     float64 `json:"pause_p50_ms"`
	PauseP99ms     float64 `json:"pause_p99_ms"`
	LinkState      string  `json:"link_state"`
	LinkTransport  string  `json:"link_transport,omitempty"` // tcp or ether
	LinkTxMBps     float64 `json:"link_tx_mb_s"`
	LinkRxMBps     float64 `json:"link_rx_mb_s"`
	LinkTxBytes    uint64  `json:"link_tx_bytes"`
	LinkRxBytes    uint64  `json:"link_rx_bytes"`
	Retransmits    uint64  `json:"link_retransmits"`
	GuestState     string  `json:"guest_state"` // running, paused, mirroring, stopped
	// Protection is the protected guest's state (ft.ProtectionState):
	// unprotected, syncing, protected, failed over, mirroring, with detail.
	Protection    string  `json:"protection,omitempty"`
	SyncSeconds   float64 `json:"sync_s"`
	ReleasedBytes uint64  `json:"released_bytes"`
	UptimeSeconds float64 `json:"uptime_s"`
}

// Point is one checkpoint of the plot: when the guest resumed (Unix ms),
// its pause, and the FT link bytes since the previous checkpoint.
type Point struct {
	UnixMs  int64   `json:"t"`
	PauseMs float64 `json:"pause_ms"`
	Bytes   uint64  `json:"bytes"`
}

// Source is what the server reports on: the FT side implements it.
type Source interface {
	Status() Status
	// Checkpoints returns the checkpoints since t, oldest first.
	Checkpoints(since time.Time) []Point
}
