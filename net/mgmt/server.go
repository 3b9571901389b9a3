// Package mgmt is doppel's management HTTP server, served with net/http on
// a listener of doppel's network stack (or any net.Listener):
//
//	/             a page that plots the last minutes of checkpoints (pause
//	              and FT-link bytes per checkpoint) and refreshes itself
//	/status       JSON: role, peer, epoch, checkpoint rate, pause p50/p99,
//	              link MB/s, guest state (Status)
//	/metrics      the same in the Prometheus text exposition format 0.0.4
//	/checkpoints  JSON: the checkpoints of the last ?window=<seconds> (max
//	              600, default 300), oldest first, which the page plots
package mgmt

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

//go:embed page.html
var page []byte

// maxWindow bounds /checkpoints?window=.
const maxWindow = 600

// Handler serves the endpoints for src.
func Handler(src Source) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, src.Status())
	})
	mux.HandleFunc("GET /checkpoints", func(w http.ResponseWriter, r *http.Request) {
		win := 300
		if s := r.URL.Query().Get("window"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil || v <= 0 || v > maxWindow {
				http.Error(w, fmt.Sprintf("window=%q: want seconds in 1..%d", s, maxWindow), http.StatusBadRequest)
				return
			}
			win = v
		}
		pts := src.Checkpoints(time.Now().Add(-time.Duration(win) * time.Second))
		if pts == nil {
			pts = []Point{}
		}
		writeJSON(w, pts)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		WriteMetrics(w, src.Status())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}

// Serve serves the endpoints on l until l is closed.
func Serve(l net.Listener, src Source) error {
	srv := &http.Server{Handler: Handler(src), ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(l)
}

// WriteMetrics writes st in the Prometheus text format.
func WriteMetrics(w io.Writer, st Status) {
	role := fmt.Sprintf("{role=%q}", st.Role)
	up := 0.0
	if st.LinkState == "up" {
		up = 1
	}
	for _, m := range []struct {
		name, typ, help string
		v               float64
	}{
		{"doppel_ft_epoch", "gauge", "Last captured (primary) or committed (secondary) epoch.", float64(st.Epoch)},
		{"doppel_ft_checkpoints_total", "counter", "Checkpoints taken.", float64(st.Checkpoints)},
		{"doppel_ft_checkpoint_rate_hz", "gauge", "Checkpoints per second over the last 10 s.", st.CheckpointRate},
		{"doppel_ft_pause_p50_seconds", "gauge", "Median guest pause per checkpoint.", st.PauseP50ms / 1e3},
		{"doppel_ft_pause_p99_seconds", "gauge", "99th percentile guest pause per checkpoint.", st.PauseP99ms / 1e3},
		{"doppel_ft_sync_seconds", "gauge", "Duration of the initial sync (0 until done).", st.SyncSeconds},
		{"doppel_ft_link_up", "gauge", "1 while the FT link has a session.", up},
		{"doppel_ft_link_tx_bytes_total", "counter", "Bytes sent on the FT link.", float64(st.LinkTxBytes)},
		{"doppel_ft_link_rx_bytes_total", "counter", "Bytes received on the FT link.", float64(st.LinkRxBytes)},
		{"doppel_ft_link_tx_megabytes_per_second", "gauge", "FT link send rate over the last second.", st.LinkTxMBps},
		{"doppel_ft_link_retransmits_total", "counter", "Frames retransmitted by the FT link's transport (TCP segments, or ether stream frames).", float64(st.Retransmits)},
		{"doppel_ft_released_bytes_total", "counter", "Guest output released to the outside world.", float64(st.ReleasedBytes)},
		{"doppel_uptime_seconds", "gauge", "Seconds since the FT service started.", st.UptimeSeconds},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s%s %s\n", m.name, m.help, m.name, m.typ, m.name, role,
			strconv.FormatFloat(m.v, 'g', -1, 64))
	}
}
