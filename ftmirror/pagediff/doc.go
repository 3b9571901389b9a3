// Package pagediff compares and applies 4 KiB guest pages 8 bytes at a time:
// the zero-page check, the count of differing words, the word-wise apply
// used by the secondary (DESIGN.md capability F4, after US11288123: write
// only the 8-byte words that differ) and a compact delta encoding for pages
// sent over the FT link.
//
// # Why 8-byte words
//
// The unit of comparison is the aligned 8-byte word because it is the natural
// register and store width of amd64: a word is loaded, compared and stored in
// one instruction, an aligned 8-byte store is single-copy atomic, and guest
// stores of pointers, counters and page-table entries are mostly 8 bytes and
// 8-aligned, so a guest write rarely dirties only part of a word. Smaller
// units would make delta headers and per-unit branches more expensive for
// little gain in precision; larger units (cache lines) would resend up to
// 56 unchanged bytes per changed word.
//
// # Delta encoding
//
// AppendDelta encodes cur relative to prev (both PageSize bytes, 512 words)
// as a sequence of runs of changed words, each run being
//
//	offset size  field
//	0      2     first word index, little-endian uint16, 0..511
//	2      2     word count, little-endian uint16, 1..512-first
//	4      8*n   the n new words, in page order
//
// with no terminator and no count of runs: the caller frames the delta with
// its length. An unchanged page encodes to zero bytes. Runs are sorted by
// first word index and do not overlap; ApplyDelta accepts adjacent runs
// (first == previous first+count) but AppendDelta never produces them.
//
// Run merging: a run header costs 4 bytes and merging two runs across a gap
// of g unchanged words costs 8*g bytes, so merging never shrinks the
// encoding (8*g > 4 for every g >= 1). AppendDelta therefore emits exactly
// the maximal runs of changed words, which is the smallest encoding of this
// format: size = 4*runs + 8*changedWords. DeltaSize computes that figure from
// a bitmap of differing words without building the delta.
//
// ApplyDelta validates the whole delta before writing anything: a truncated
// header or payload, a zero count, a run past word 511, or a run starting
// before the end of the previous one returns an error wrapping ErrMalformed
// and leaves the page untouched.
//
// # Implementations
//
// Following STYLE.md example 14, the three hot loops (zero check, diff
// bitmap, word apply) have a portable Go version and, on amd64, an assembly
// version selected at init behind the small arch interface in arch.go. The
// amd64 version uses AVX2 only when CPUID reports it and the OS has enabled
// the YMM state (golang.org/x/sys/cpu checks OSXSAVE and XGETBV), so the
// bare-metal kernel, which runs without OSXSAVE, falls back to SSE2. Tests
// cross-check every implementation against the portable one.
package pagediff
