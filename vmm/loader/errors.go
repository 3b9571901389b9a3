package loader

import "errors"

// Errors the loader wraps with what exactly was wrong; test with errors.Is.
var (
	// ErrUnknownFormat: no bzImage setup header, multiboot header or ELF
	// magic was found (a wrong magic).
	ErrUnknownFormat = errors.New("unknown kernel format")
	// ErrTruncated: the image ends before a header, segment or payload it
	// declares.
	ErrTruncated = errors.New("truncated image")
	// ErrChecksum: a multiboot header's checksum does not add up.
	ErrChecksum = errors.New("bad header checksum")
	// ErrCorrupt: a header field is inconsistent (addresses out of order,
	// a segment smaller on disk than in the file, a bad tag size).
	ErrCorrupt = errors.New("corrupt image")
	// ErrUnsupported: a well-formed image that needs something this loader
	// does not offer (an unknown required multiboot flag or tag, a kernel
	// without the 64-bit entry, an ELF for another machine).
	ErrUnsupported = errors.New("unsupported image")
	// ErrTooBig: a kernel, initrd, module or command line does not fit in
	// the guest's RAM or under the limit the kernel declares.
	ErrTooBig = errors.New("too big for guest memory or the kernel's limit")
	// ErrOverlap: two pieces the loader must place (segments, modules, boot
	// structures) would overlap.
	ErrOverlap = errors.New("overlapping segments")
	// ErrBadLayout: the machine's memory map is malformed.
	ErrBadLayout = errors.New("bad memory layout")
)
