package mgmt

import (
	"bufio"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// liveSource adds a checkpoint every 20 ms with a pause that grows with
// its index, so the newest point is always the largest pause.
type liveSource struct {
	mu  sync.Mutex
	pts []Point
}

func newLiveSource(t *testing.T) *liveSource {
	s := &liveSource{}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			s.mu.Lock()
			s.pts = append(s.pts, Point{UnixMs: time.Now().UnixMilli(), PauseMs: 0.1 + 0.001*float64(i), Bytes: uint64(50000 + 1000*(i%7))})
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *liveSource) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{Role: "primary", Peer: "10.7.0.2:7800", Epoch: uint64(len(s.pts)), Checkpoints: uint64(len(s.pts)),
		CheckpointRate: 50, PauseP50ms: 0.12, PauseP99ms: 0.3, LinkState: "up", LinkTxMBps: 2.5, GuestState: "running"}
}

func (s *liveSource) Checkpoints(since time.Time) []Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Point
	for _, p := range s.pts {
		if p.UnixMs >= since.UnixMilli() {
			out = append(out, p)
		}
	}
	return out
}

func (s *liveSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pts)
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	r, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return r, b.String()
}

func TestEndpoints(t *testing.T) {
	src := newLiveSource(t)
	srv := httptest.NewServer(Handler(src))
	defer srv.Close()
	time.Sleep(100 * time.Millisecond)

	r, body := get(t, srv.URL+"/status")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/status: %v (%s) %q", err, r.Header.Get("Content-Type"), body)
	}
	if st.Role != "primary" || st.Epoch == 0 || st.PauseP99ms != 0.3 {
		t.Fatalf("/status = %+v", st)
	}

	_, body = get(t, srv.URL+"/checkpoints?window=60")
	var pts []Point
	if err := json.Unmarshal([]byte(body), &pts); err != nil || len(pts) == 0 {
		t.Fatalf("/checkpoints: %v, %d points", err, len(pts))
	}
	for _, bad := range []string{"0", "601", "x", "-5"} {
		if r, _ := get(t, srv.URL+"/checkpoints?window="+bad); r.StatusCode != http.StatusBadRequest {
			t.Errorf("window=%s: status %d, want 400", bad, r.StatusCode)
		}
	}
	if r, _ := get(t, srv.URL+"/nothing"); r.StatusCode != http.StatusNotFound {
		t.Errorf("/nothing: status %d", r.StatusCode)
	}
	if r, body := get(t, srv.URL+"/"); !strings.Contains(body, `<canvas id="plot"`) || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Errorf("/ is not the plot page")
	}

	r, body = get(t, srv.URL+"/metrics")
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("/metrics content type %q", ct)
	}
	checkExposition(t, body, map[string]float64{"doppel_ft_pause_p99_seconds": 0.0003, "doppel_ft_link_up": 1})
}

// checkExposition checks the Prometheus text format: each sample is
// preceded by its HELP and TYPE lines, names and values are well formed,
// and the given samples have their values.
func checkExposition(t *testing.T, text string, want map[string]float64) {
	t.Helper()
	sample := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? (\S+)$`)
	typed := map[string]string{}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch f := strings.Fields(line); {
		case strings.HasPrefix(line, "# HELP "):
		case strings.HasPrefix(line, "# TYPE "):
			if len(f) != 4 || (f[3] != "gauge" && f[3] != "counter") {
				t.Errorf("bad TYPE line %q", line)
				continue
			}
			typed[f[2]] = f[3]
		default:
			m := sample.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("bad sample line %q", line)
				continue
			}
			if typed[m[1]] == "" {
				t.Errorf("sample %s without TYPE", m[1])
			}
			v, err := strconv.ParseFloat(m[4], 64)
			if err != nil {
				t.Errorf("sample %s value %q", m[1], m[4])
			}
			if w, ok := want[m[1]]; ok && v != w {
				t.Errorf("%s = %v, want %v", m[1], v, w)
			}
			if typed[m[1]] == "counter" && !strings.HasSuffix(m[1], "_total") {
				t.Errorf("counter %s does not end in _total", m[1])
			}
			seen[m[1]] = true
		}
	}
	for k := range want {
		if !seen[k] {
			t.Errorf("metric %s missing", k)
		}
	}
}

// chromium runs Debian's chromium headless on url with extra flags and
// returns its stdout.
func chromium(t *testing.T, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (scripts/deps.sh installs Debian's chromium): %v", err)
	}
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=4000", "--window-size=1000,600"}
	cmd := exec.Command(bin, append(base, args...)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
		}
	case <-time.After(120 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("chromium %v did not finish in 120 s\n%s", args, errb.String())
	}
	return out.String()
}

// TestPageInChromium loads the page in headless Chromium and checks that
// the plot was drawn from the live data: the DOM after the scripts ran
// names as many points as the source held around then and the newest
// (largest) pause, and the screenshot has pixels of both series' colours.
func TestPageInChromium(t *testing.T) {
	src := newLiveSource(t)
	srv := httptest.NewServer(Handler(src))
	defer srv.Close()
	time.Sleep(300 * time.Millisecond)
	before := src.count()
	dom := chromium(t, "--dump-dom", srv.URL+"/")
	after := src.count()
	m := regexp.MustCompile(`data-points="(\d+)"[^>]*data-max-pause-ms="([\d.]+)"`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no plotted canvas in the DOM:\n%s", dom)
	}
	n, _ := strconv.Atoi(m[1])
	if n < before || n > after {
		t.Fatalf("page plotted %d points; the source had %d before the page loaded and %d after", n, before, after)
	}
	maxPause, _ := strconv.ParseFloat(m[2], 64)
	if want := 0.1 + 0.001*float64(n-1); fmt.Sprintf("%.3f", want) != m[2] {
		t.Fatalf("page's max pause %v ms, the source's newest of %d points is %.3f", maxPause, n, want)
	}
	if !strings.Contains(dom, fmt.Sprintf("%d checkpoints plotted", n)) || !strings.Contains(dom, "role: primary") {
		t.Fatalf("summary or status missing in the DOM:\n%s", dom)
	}

	shot := filepath.Join(t.TempDir(), "page.png")
	chromium(t, "--screenshot="+shot, srv.URL+"/")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	var red, blue int
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			r, g, bl = r>>8, g>>8, bl>>8
			switch {
			case r > 190 && g < 80 && bl < 80: // #d62d20, the pause series
				red++
			case r < 40 && g < 120 && bl > 190: // #0057e7, the bytes series
				blue++
			}
		}
	}
	t.Logf("screenshot %v: %d pause-coloured and %d bytes-coloured pixels; %d points plotted", b.Size(), red, blue, n)
	// The legend alone has two 10-pixel squares of each colour; the
	// series add hundreds of pixels.
	if red < 300 || blue < 300 {
		t.Fatalf("the plot is not drawn: %d pause-coloured and %d bytes-coloured pixels", red, blue)
	}
	if os.Getenv("MGMT_SCREENSHOT") != "" {
		b, _ := os.ReadFile(shot)
		os.WriteFile(os.Getenv("MGMT_SCREENSHOT"), b, 0o644)
	}
}
