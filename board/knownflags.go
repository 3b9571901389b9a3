package board

// Names of the flags doppel knows at boot. Subsystems that come later (vmm,
// ftmirror) register theirs in Known from an init function.
const (
	FlagSelftest        = "doppel.selftest"
	FlagSelftestChurn   = "doppel.selftest.churn"
	FlagSelftestSlack   = "doppel.selftest.slack"
	FlagSelftestTimeout = "doppel.selftest.timeout"
	FlagGuest           = "doppel.guest"
	FlagLogLines        = "doppel.loglines"
	FlagSVMCPU0         = "doppel.svm.cpu0"

	// Read by the boot layer (boot/CONTRACT.md, "Boot flags the layer
	// itself reads"); Go parses them to report and use the same values.
	FlagReserve = "doppel.reserve"
	FlagFatal   = "doppel.fatal"
	FlagSMP     = "doppel.smp"
	FlagXSave   = "doppel.xsave"
)

// Known is the registry of doppel's boot flags.
var Known = mustRegistry(
	Flag{Name: FlagSelftest, Kind: KindBool, Default: "0",
		Help: "run the boot self-tests, print the results, power off"},
	Flag{Name: FlagSelftestChurn, Kind: KindSize, Default: "0",
		Help: "bytes the allocation churn test allocates (0: MemTotal+25% on bare metal, 256M on a host)"},
	Flag{Name: FlagSelftestSlack, Kind: KindDuration, Default: "25ms",
		Help: "how late time.Sleep(50ms) may wake in the sleep test"},
	Flag{Name: FlagSelftestTimeout, Kind: KindDuration, Default: "90s",
		Help: "time limit of each self-test"},
	Flag{Name: FlagGuest, Kind: KindString, Default: "",
		Help: "multiboot module to start as the guest (needs the vmm)"},
	Flag{Name: FlagLogLines, Kind: KindInt, Default: "1024", Min: 16, Max: 1 << 20,
		Help: "log lines kept in memory for the shell's log command"},
	Flag{Name: FlagSVMCPU0, Kind: KindEnum, Default: "auto", Enum: []string{"auto", "avoid", "use"},
		Help: "under AMD-V, whether vCPUs may run on CPU 0: auto keeps them off it under QEMU TCG (a QEMU race, vmm/svm/hostcpu.go)"},
	Flag{Name: FlagReserve, Kind: KindSize, Default: "64M", Layer: true,
		Help: "size of the reserved region for EPT and guest memory"},
	Flag{Name: FlagFatal, Kind: KindEnum, Default: "halt", Enum: []string{"halt", "reboot"}, Layer: true,
		Help: "what the boot layer does when the kernel fails"},
	Flag{Name: FlagSMP, Kind: KindInt, Default: "4096", Min: 1, Max: 4096, Layer: true,
		Help: "bring up at most this many CPUs (default: every CPU the layer supports)"},
	Flag{Name: FlagXSave, Kind: KindEnum, Default: "all", Enum: []string{"all", "sse"}, Layer: true,
		Help: "vector state for doppel's own code: all (AVX, AVX-512 where present) or sse"},
)

func mustRegistry(flags ...Flag) *Registry {
	r, err := NewRegistry(flags...)
	if err != nil {
		panic(err) // a bad built-in flag table is a programming error
	}
	return r
}
