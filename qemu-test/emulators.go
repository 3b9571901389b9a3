package qemutest

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Module is a multiboot module handed to doppel: a file and its name, which
// becomes the module's command line (doppel.guest=<name> picks it).
type Module struct {
	Path, Name string
}

// QEMUConfig describes a QEMU TCG boot of build/doppel.bin via -kernel.
type QEMUConfig struct {
	Cmdline string
	SMP     int    // CPUs, default 2
	MemMiB  int    // default 4096
	CPU     string // -cpu model, default QEMU's
	Modules []Module
	Extra   []string // more QEMU arguments (devices, netdevs)
}

// StartQEMU boots doppel.bin under QEMU TCG with the serial console on the
// process's stdio.
func StartQEMU(name string, c QEMUConfig) (*Machine, error) {
	return startQEMU(name, imagePath("doppel.bin"), c)
}

func startQEMU(name, image string, c QEMUConfig) (*Machine, error) {
	if c.SMP == 0 {
		c.SMP = 2
	}
	if c.MemMiB == 0 {
		c.MemMiB = 4096
	}
	args := []string{
		"-kernel", image,
		"-append", c.Cmdline,
		"-smp", strconv.Itoa(c.SMP), "-m", strconv.Itoa(c.MemMiB),
		"-display", "none", "-monitor", "none", "-serial", "stdio",
		"-no-reboot", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
	}
	if c.CPU != "" {
		args = append(args, "-cpu", c.CPU)
	}
	args = append(args, c.Extra...)
	if len(c.Modules) > 0 {
		var initrd string
		for i, mod := range c.Modules {
			if i > 0 {
				initrd += ","
			}
			initrd += mod.Path + " " + mod.Name
		}
		args = append(args, "-initrd", initrd)
	}
	return runQEMU(name, args)
}

// qemuBinary is the QEMU the tests run: $DOPPEL_QEMU (scripts/qemu.sh
// installs Debian 13's QEMU 10 beside the system's, for comparison runs),
// else qemu-system-x86_64 from PATH.
func qemuBinary() string {
	if q := os.Getenv("DOPPEL_QEMU"); q != "" {
		return q
	}
	return "qemu-system-x86_64"
}

// runQEMU starts qemu-system-x86_64 with args, its serial console on the
// process's stdio.
func runQEMU(name string, args []string) (*Machine, error) {
	m, err := newMachine(name)
	if err != nil {
		return nil, err
	}
	// A CPU reset (a triple fault under -no-reboot) ends QEMU without a
	// word on the console: QEMU's own log of the CPU state at each reset
	// says what happened.
	// DOPPEL_QEMU_D adds QEMU log items (e.g. "int,guest_errors") to that
	// log, for diagnosis by hand.
	items := "cpu_reset"
	if d := strings.TrimSpace(os.Getenv("DOPPEL_QEMU_D")); d != "" {
		items += "," + d
	}
	args = append(args, "-d", items, "-D", strings.TrimSuffix(m.log.Name(), ".log")+".qemu-reset.log")
	// DOPPEL_QEMU_EXTRA adds QEMU options, for diagnosis by hand (e.g.
	// "-action shutdown=pause -monitor unix:/tmp/mon,server,nowait" keeps
	// a machine that triple-faulted for the monitor's xp).
	args = append(args, strings.Fields(os.Getenv("DOPPEL_QEMU_EXTRA"))...)
	// DOPPEL_QEMU_MONITOR names a directory where each machine gets a
	// human-monitor socket, <name>.sock with / as _, for tools/qprof.
	if dir := os.Getenv("DOPPEL_QEMU_MONITOR"); dir != "" {
		sock := filepath.Join(dir, strings.ReplaceAll(name, "/", "_")+".sock")
		args = append(args, "-monitor", "unix:"+sock+",server=on,wait=off")
	}
	m.cmd = exec.Command(qemuBinary(), args...)
	fmt.Fprintf(m.log, "# %s %q\n", qemuBinary(), args)
	if m.in, err = m.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	// Our own pipe, not StdoutPipe: Wait (run as soon as the process
	// starts) closes a StdoutPipe when the process exits, dropping what the
	// pump had not read yet; a QEMU that prints and exits at once (an exit
	// through port 0xF4) lost its last lines that way. This read end stays
	// open until the pump has read to EOF.
	stdout, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	m.cmd.Stdout = w
	m.cmd.Stderr = io.MultiWriter(m.log, &m.stderr)
	err = m.start()
	w.Close() // the child holds its own copy; EOF comes when it exits
	if err != nil {
		stdout.Close()
		return nil, err
	}
	go func() {
		m.pump(stdout)
		stdout.Close()
	}()
	return m, nil
}

// buildISO makes a GRUB ISO of the tested image with cmdline and modules
// (scripts/mkiso.sh; BIOS and, with grub-efi-amd64-bin, UEFI) in the run's
// own directory, and returns that directory and the ISO's path.
func buildISO(name, cmdline string, mods []Module) (work, iso string, err error) {
	work = filepath.Join(repoRoot(), "build", "qemu-test", strings.ReplaceAll(name, "/", "_"))
	if err := os.MkdirAll(work, 0o755); err != nil {
		return "", "", err
	}
	iso = filepath.Join(work, "boot.iso")
	mk := []string{filepath.Join(repoRoot(), "scripts", "mkiso.sh"), iso, imagePath("doppel.bin"), cmdline}
	for _, mod := range mods {
		mk = append(mk, mod.Path, mod.Name)
	}
	if out, err := exec.Command("bash", mk...).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("%s: mkiso: %v: %s", name, err, out)
	}
	return work, iso, nil
}

// BochsConfig describes a Bochs boot of a GRUB ISO built for this run.
type BochsConfig struct {
	Cmdline string
	CPUs    int    // default 2
	MemMiB  int    // default 512
	Model   string // Bochs CPU model, default an Intel one with VMX+EPT
	Modules []Module
	Extra   string // more bochsrc lines (e.g. an e1000 on a bxhub port)
}

// StartBochs builds an ISO with the given command line and modules, boots it
// under Bochs and connects to its COM1 socket.
func StartBochs(name string, c BochsConfig) (*Machine, error) {
	if c.CPUs == 0 {
		c.CPUs = 2
	}
	if c.MemMiB == 0 {
		c.MemMiB = 512
	}
	if c.Model == "" {
		c.Model = "corei7_skylake_x"
	}
	root := repoRoot()
	work, iso, err := buildISO(name, c.Cmdline, c.Modules)
	if err != nil {
		return nil, err
	}
	m, err := newMachine(name)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	rc, err := exec.Command("bash", filepath.Join(root, "scripts", "bochsrc.sh"), iso, strconv.Itoa(port),
		strconv.Itoa(c.CPUs), strconv.Itoa(c.MemMiB), c.Model).Output()
	if err != nil {
		return nil, fmt.Errorf("%s: bochsrc: %w", name, err)
	}
	rcPath, contPath := filepath.Join(work, "bochsrc"), filepath.Join(work, "continue")
	rc = append(rc, c.Extra...)
	if err := os.WriteFile(rcPath, rc, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(contPath, []byte("c\n"), 0o644); err != nil {
		return nil, err
	}
	bochsOut, err := os.Create(filepath.Join(work, "bochs.out"))
	if err != nil {
		return nil, err
	}
	m.cmd = exec.Command("bochs", "-q", "-f", rcPath, "-rc", contPath)
	m.cmd.Stdout, m.cmd.Stderr = bochsOut, bochsOut
	fmt.Fprintf(m.log, "# bochs -q -f %s (cmdline %q)\n", rcPath, c.Cmdline)
	if err := m.start(); err != nil {
		return nil, err
	}
	conn, err := dialRetry(port, 30*time.Second, m.exited)
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: bochs COM1: %w (see %s)", name, err, bochsOut.Name())
	}
	m.in = conn
	go m.pump(conn)
	return m, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func dialRetry(port int, timeout time.Duration, exited <-chan struct{}) (net.Conn, error) {
	deadline := time.Now().Add(timeout)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for {
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			return conn, nil
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("emulator exited before its console opened")
		default:
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
