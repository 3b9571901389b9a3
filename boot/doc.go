// Package boot is doppel's freestanding boot layer: GNU as and C, built with
// gcc -ffreestanding -mno-red-zone -mgeneral-regs-only -fno-pic
// -mcmodel=small (the layer is linked and identity-mapped at 1 MiB), no libc.
// It boots an x86-64 machine, loads an unmodified static GOOS=linux
// GOARCH=amd64 Go binary (linked with the flags in boot/goldflags) and runs it
// in ring 0, answering its Linux system calls. This package holds no Go code;
// the interface with the Go kernel is boot/CONTRACT.md.
//
// # Build
//
//	boot/build.sh <go-kernel-elf> <outdir>
//
// writes <outdir>/doppel.bin (flat image with a Multiboot 1 header using the
// a.out-kludge address fields, for QEMU -kernel, and a Multiboot 2 header with
// address and entry tags, for GRUB; the Go ELF is embedded with .incbin and
// its PT_LOAD segments copied into place at boot) and <outdir>/doppel.iso
// (GRUB, BIOS and UEFI, serial console, timeout 0, menu entry "doppel" with
// $DOPPEL_CMDLINE and a second one adding doppel.fatal=reboot).
// boot/bochs.sh runs an ISO under Bochs with the console on a socket.
//
// # Files (boot/layer/)
//
//	entry.S      multiboot headers, 32-bit entry, long mode, GDT, .incbin
//	vectors.S    IDT stubs (all on IST stacks), SYSCALL entry, swtch
//	ap.S         AP trampoline (real -> long mode) copied to 0x8000
//	main.c       boot sequence, doppel.* flags
//	multiboot.c  Multiboot 1/2 information: memory map, cmdline, modules
//	mem.c        carve-outs (kernel, doppel-reserved) and the frame allocator
//	paging.c     page tables, direct map, TLB shootdown
//	vm.c         VMAs: mmap, munmap, madvise, mprotect, demand paging
//	elf.c        Go image loading, initial process stack
//	cpu.c        GDT/TSS/IST, IDT, SYSCALL MSRs, SSE
//	apic.c acpi.c smp.c   LAPIC, I/O APIC, 8259 masking, MADT, AP start
//	trap.c       exceptions and interrupts, fatal register dump
//	signal.c     sigaction, sigframes, sigreturn, tgkill
//	sched.c      threads, run queue, big kernel lock, idle
//	proc.c       clone, futex, sleeps, clocks, affinity, getrandom, uname
//	fs.c         file descriptors: console, /proc, /dev, eventfd, epoll
//	procfs.c     the text of the /proc files
//	power.c      power off, restart, halt, exit_group policy
//	time.c       TSC calibrated against PIT channel 2, CMOS RTC
//
// # Address space
//
// One address space for the layer and Go, all ring 0:
//
//	0x0000_0000_0000_0000  page 0 unmapped (nil dereferences fault)
//	0x0000_0000_0000_8000  AP trampoline, identity
//	0x0000_0000_0010_0000  the layer, identity (text, data, embedded ELF, bss)
//	0x0000_0000_4000_0000  the Go image at its link address (-T 0x40001000);
//	                       frames right after the layer
//	go image end .. 0x7fff_ffff_ffff   Go's mmap space: VMAs, demand-paged;
//	                       hints (0xc000000000...) honoured when free,
//	                       otherwise top-down from 0x7f00_0000_0000;
//	                       main thread stack: 8 MiB below 0x7ff0_0000_0000
//	0xffff_8000_0000_0000  direct map of all RAM (and the low 4 GiB) with
//	                       2 MiB pages, uncached where no RAM is
//
// Physical memory: the kernel region (layer, Go image, boot page tables) is
// contiguous from 1 MiB; the reserved region (doppel.reserve=, default 64M)
// is at the top of the largest usable range; every other usable page is a
// frame handed out by mmap/page faults and returned by munmap and
// madvise(MADV_DONTNEED). Go's scavenger therefore really returns memory.
//
// # Execution model
//
// Go runs in ring 0 with interrupts on. SYSCALL (LSTAR) and every interrupt
// enter the layer, which switches to the current thread's 16 KiB kernel
// stack, takes one big kernel lock (clock_gettime, gettimeofday, gettid,
// nanosleeps under 10 us and timeout-0 epoll_pwait calls do not) and returns with IRETQ. Threads are switched on their kernel
// stacks; the switch also swaps the FS base and the thread's vector state.
// CR4.OSXSAVE is set and XCR0 enables x87, SSE, AVX and, where the CPU has
// them, the three AVX-512 components (doppel.xsave=sse keeps x87|SSE), so
// the runtime's own detection (CPUID.OSXSAVE, XGETBV) finds AVX2 and
// AVX-512 and uses them. Thread switches and signal frames save that state
// with XSAVE in standard format (signal frames marked as Linux marks them);
// without XSAVE, FXSAVE. The VMM XSETBVs a guest's XCR0 around VM entries
// (vmm/xsave.go). Each
// CPU's LAPIC timer runs one-shot: armed for the end of the 4 ms time slice
// or the earliest sleeper's deadline, whichever is first (so sleeps and
// futex/epoll timeouts are exact, not tick-rounded); an idle CPU arms it
// only for deadlines and halts, woken by IPIs. A woken thread whose CPUs are
// all busy gets a reschedule IPI sent to one of them (wakeup preemption).
// Page-table removals shoot down the TLBs of the other CPUs (IPI; a CPU
// spinning on the lock flushes in the spin loop). Go's BSS beyond the file
// contents (32 MiB for the kernel) is demand-zero, not copied.
//
// A fault of the layer on a Go pointer passed to a system call (a buffer in
// PROT_NONE memory, say) makes the call return EFAULT, as on Linux, and is
// logged on COM1; any other fault in the layer is fatal.
//
// Faults in Go become signals through a Linux rt_sigframe (siginfo,
// ucontext with sigcontext and fpstate, sa_restorer as return address) on
// the sigaltstack when SA_ONSTACK: #PF outside a VMA or against its rights
// -> SIGSEGV (SEGV_MAPERR/SEGV_ACCERR, si_addr = CR2), #GP/#SS -> SIGSEGV
// (SI_KERNEL), #DE -> SIGFPE, #UD -> SIGILL, #AC -> SIGBUS, #MF/#XM ->
// SIGFPE, #DB/#BP -> SIGTRAP. tgkill/tkill/kill queue a signal; a target
// running on another CPU gets an IPI so it enters the layer and takes the
// signal on the way out (the runtime's SIGURG preemption). A fault inside the
// layer, or a fatal signal with SIG_DFL, prints the registers and "boot:
// fatal ..." and halts (or restarts with doppel.fatal=reboot).
//
// # System calls
//
// Dispatch is one switch in syscall.c; each row is one small function.
//
//	nr   name                what the layer does
//	0    read                fd 0: blocks until COM1 has bytes (IRQ 4), returns them raw;
//	                         /proc files: from a buffer made at open; /dev/irq/<n>: blocks
//	                         until the line fired, returns the 8-byte count and unmasks
//	                         (/dev/msi/<k>: the same for MSI vector 0x60+k, no mask);
//	                         eventfd: counter (EAGAIN if 0 and O_NONBLOCK); /dev/urandom
//	1    write               fd 1, 2: queued for COM1, sent by interrupt (\n -> \r\n);
//	                         eventfd: add, wake
//	3    close               frees the descriptor (0-2 stay open)
//	5    fstat               st_mode (regular for /proc, char device otherwise), st_size
//	9    mmap                anonymous: VMA, demand-paged, hint honoured if free,
//	                         MAP_FIXED replaces, MAP_FIXED_NOREPLACE; /dev/mem fd: maps
//	                         physical memory at offset (UC where not RAM), never freed
//	10   mprotect            rewrites the VMA and PTEs; PROT_NONE keeps the data
//	11   munmap              frees the frames, removes the VMA, TLB shootdown
//	12   brk                 returns 0 (no heap: Go uses mmap)
//	13   rt_sigaction        remembers handler, flags, restorer, mask
//	14   rt_sigprocmask      per-thread mask (BLOCK, UNBLOCK, SETMASK)
//	15   rt_sigreturn        restores registers, mask and FPU state from the frame
//	16   ioctl               console TCSBRK (tcdrain): waits until the queue is sent; else ENOTTY
//	24   sched_yield         requeues the caller if another thread can run here
//	28   madvise             DONTNEED/FREE free the frames (reads back zero); others 0
//	35   nanosleep           sleeps (one-shot timer: exact to the LAPIC tick); under
//	                         10 us it waits on the clock, lock-free (Go's runqgrab sleeps 3 us)
//	39   getpid              100
//	56   clone               threads only (CLONE_VM|CLONE_THREAD): RAX=0 in the child,
//	                         child stack from the argument, TLS from R8 with
//	                         CLONE_SETTLS, other registers and FPU state copied
//	60   exit                ends the thread
//	62   kill                signal to the caller's process (SIG_DFL fatal -> stop)
//	63   uname               Linux 6.1.0-doppel x86_64
//	72   fcntl               F_GETFD/F_SETFD 0, F_GETFL/F_SETFL (O_NONBLOCK)
//	96   gettimeofday        realtime, lock-free
//	102  getuid              0
//	104  getgid              0
//	107  geteuid             0
//	108  getegid             0
//	110  getppid             0
//	131  sigaltstack         per-thread alternate stack
//	157  prctl               0; PR_DOPPEL_KICK (0x4B49434B), tid: an NMI to the CPU the thread runs on (vmm Kick)
//	158  arch_prctl          ARCH_SET_FS: FS_BASE MSR, saved per thread; ARCH_GET_FS
//	169  reboot              POWER_OFF, RESTART, HALT (LINUX_REBOOT_MAGIC1 required)
//	186  gettid              thread id (lock-free)
//	200  tkill               as tgkill
//	202  futex               WAIT/WAIT_BITSET (value checked under the lock, optional
//	                         timeout), WAKE/WAKE_BITSET; PRIVATE flag accepted; others
//	                         ENOSYS
//	203  sched_setaffinity   pins a thread to CPUs; the caller moves at once
//	204  sched_getaffinity   mask of the online CPUs, returns 8
//	218  set_tid_address     returns the tid
//	228  clock_gettime       REALTIME/REALTIME_COARSE: RTC at boot + TSC; all others
//	                         monotonic TSC time; lock-free
//	229  clock_getres        1 ns
//	230  clock_nanosleep     relative or TIMER_ABSTIME (MONOTONIC or REALTIME)
//	231  exit_group          prints "boot: exit <code>"; 0 powers off, otherwise
//	                         doppel.fatal (halt or reboot)
//	232  epoll_wait          as epoll_pwait
//	233  epoll_ctl           ADD/MOD/DEL of eventfds and /dev/irq/<n> fds; other fds
//	                         EPERM (Go then uses blocking reads on them)
//	234  tgkill              queues the signal; IPI if the thread runs elsewhere
//	257  openat              the files of CONTRACT.md, /dev/urandom, /dev/random,
//	                         /dev/null; everything else ENOENT
//	262  newfstatat          with AT_EMPTY_PATH as fstat, otherwise ENOENT
//	281  epoll_pwait         level-triggered readiness (an irq fd: its line fired since
//	                         the last read); blocks until an eventfd write, an irq
//	                         or the timeout (the idle runtime's timer sleep); timeout 0
//	                         answers lock-free (the scheduler's non-blocking poll)
//	290  eventfd2            counter, EFD_NONBLOCK
//	291  epoll_create1       an epoll set (up to 8 eventfds and irq fds)
//	302  prlimit64           RLIMIT_NOFILE 64/64, everything else unlimited
//	318  getrandom           RDRAND, else RDSEED, else TSC jitter (warned on COM1)
//	334  rseq                ENOSYS (glibc-free Go never needs it)
//	*    anything else       ENOSYS, logged once per number on COM1
//
// # Measured (2 CPUs; Bochs 2.7 ips=100M, where the TSC advances one tick per
// instruction slot; QEMU 8 TCG on a shared 2-core host)
//
//	reset -> first "boot:" line (Bochs: BIOS + GRUB from the ISO)  ~440 M TSC ticks
//	first "boot:" line -> Go entry (Bochs)                         6.2 M ticks, of which
//	    3.4 M wait on the UART, 1.0 M is the 10 ms PIT calibration window
//	clock_gettime round trip (lock-free)     Bochs 157 ticks, QEMU 570-900 cycles
//	getpid round trip (big lock)             Bochs 162 ticks, QEMU 540-1500 cycles
//	futex wake+wait round trip, same CPU     Bochs 12 us, QEMU 4-8 us
//	futex round trip across CPUs (IPIs)      Bochs 23 us, QEMU single-thread TCG 8 us
//	                                         (multi-thread TCG on a busy host: ~1 ms)
//	kernel region (layer + Go image + boot page tables), real kernel   9.3 MiB
//	    (layer bss 3 MiB: 128 kernel stacks of 16 KiB, per-CPU IST stacks;
//	    the embedded ELF copy 3.5 MiB)
//	frames in use at the kernel's shell prompt (Go heap, stacks, tables) 1.9 MiB
//
// boot/bochs.sh and boot/testprog reproduce these; "boot: tsc ticks:" on the
// console breaks the boot down by phase.
package boot
