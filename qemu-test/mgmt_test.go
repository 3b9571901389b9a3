package qemutest

import (
	"encoding/json"
	"fmt"
	"image/png"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestQEMUMgmt boots a primary with two e1000s, one on QEMU's user-mode
// network with a host forward to its management port and one on the FT
// link to a secondary, and reaches /status, /metrics and the plot page
// from the host with curl and headless Chromium.
func TestQEMUMgmt(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	r := newRelay(t, 0, 0, 1)
	p, err := StartQEMU(t.Name()+"-primary", QEMUConfig{MemMiB: 1024,
		Cmdline: "doppel.net.e1000-0=10.0.2.15/24,gw=10.0.2.2 doppel.net.e1000-1=10.9.0.1/24 doppel.ft.nic=e1000-1 " +
			"doppel.net.mgmt.port=80 doppel.ft.sim=primary doppel.ft.sim.mem=16M" + ftHeartbeat,
		Extra: []string{
			"-netdev", fmt.Sprintf("user,id=mgmt,hostfwd=tcp:127.0.0.1:%d-:80", hostPort), "-device", "e1000,netdev=mgmt,mac=52:54:00:0e:00:01",
			"-netdev", fmt.Sprintf("socket,id=ft,connect=127.0.0.1:%d", r.Port(0)), "-device", "e1000,netdev=ft,mac=52:54:00:0f:00:01"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	s, err := StartQEMU(t.Name()+"-secondary", QEMUConfig{MemMiB: 1024,
		Cmdline: "doppel.net.e1000-0=10.9.0.2/24 doppel.ft.sim=secondary doppel.ft.peer=10.9.0.1 doppel.ft.sim.mem=16M" + ftHeartbeat,
		Extra:   []string{"-netdev", fmt.Sprintf("socket,id=ft,connect=127.0.0.1:%d", r.Port(1)), "-device", "e1000,netdev=ft,mac=52:54:00:0f:00:02"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := p.Expect(regexp.MustCompile(`ft: checkpoints: [1-9]\d`), 10*time.Minute); err != nil {
		t.Fatalf("no checkpoints: %v\n%s", err, p.Tail(30))
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", hostPort)
	out, err := exec.Command("curl", "-sf", "--max-time", "30", url+"/status").Output()
	if err != nil {
		t.Fatalf("curl /status: %v", err)
	}
	var st struct {
		Role        string `json:"role"`
		Epoch       uint64 `json:"epoch"`
		Checkpoints uint64 `json:"checkpoints"`
		LinkState   string `json:"link_state"`
	}
	if err := json.Unmarshal(out, &st); err != nil || st.Role != "primary" || st.Checkpoints == 0 || st.LinkState != "up" {
		t.Fatalf("/status: %v %s", err, out)
	}
	met, err := exec.Command("curl", "-sf", "--max-time", "30", url+"/metrics").Output()
	if err != nil || !regexp.MustCompile(`(?m)^doppel_ft_checkpoints_total\{role="primary"\} [1-9]`).Match(met) {
		t.Fatalf("curl /metrics: %v\n%s", err, met)
	}
	shot := filepath.Join(t.TempDir(), "page.png")
	cmd := exec.Command("chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000", "--window-size=1000,600", "--screenshot="+shot, url+"/")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, b)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	red := 0
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			if r>>8 > 190 && g>>8 < 80 && b>>8 < 80 {
				red++
			}
		}
	}
	if red < 300 {
		t.Fatalf("the plot of pauses is not drawn (%d pixels of its colour)", red)
	}
	keep := filepath.Join(repoRoot(), "build", "qemu-test", "mgmt-page.png")
	if b, err := os.ReadFile(shot); err == nil {
		os.WriteFile(keep, b, 0o644)
	}
	t.Logf("/status %s; screenshot %s", strings.TrimSpace(string(out)), keep)
}
