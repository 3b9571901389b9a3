package board

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/doppel-ft/doppel/board/bytesize"
)

// FlagPrefix starts every doppel boot flag. Command-line words without it are
// not doppel's: KEY=value words with an undotted KEY are environment
// variables for the Go runtime (boot/CONTRACT.md, "Process start"), and the
// rest (console=..., quiet) are ignored.
const FlagPrefix = "doppel."

// Kind is the type of a flag's value.
type Kind int

// Flag kinds.
const (
	KindBool     Kind = iota // 0 or 1; a bare "doppel.x" means 1
	KindInt                  // decimal integer, optionally bounded by Min and Max
	KindSize                 // bytes: 4096, 64K, 512M, 512MB, 512MiB, 1G, 2T (bytesize)
	KindDuration             // time.ParseDuration syntax: 50ms, 2s, 1m30s
	KindString               // any non-empty text
	KindEnum                 // one of Flag.Enum
)

func (k Kind) String() string {
	return [...]string{"bool", "int", "size", "duration", "string", "enum"}[k]
}

// Flag describes one doppel boot flag.
type Flag struct {
	Name     string   // full key, with FlagPrefix
	Kind     Kind     // value type
	Default  string   // default value, in the flag's own syntax
	Help     string   // one line for the flag list
	Enum     []string // allowed values of a KindEnum flag
	Min, Max int64    // bounds of a KindInt flag, when Max > Min
	Layer    bool     // read by the boot layer too (Go only reports it)
}

// want describes the accepted syntax, for error messages.
func (f *Flag) want() string {
	switch f.Kind {
	case KindBool:
		return "0 or 1"
	case KindInt:
		if f.Max > f.Min {
			return fmt.Sprintf("an integer in %d..%d", f.Min, f.Max)
		}
		return "an integer"
	case KindSize:
		return "a size like 4096, 64K, 512M, 512MiB or 1G"
	case KindDuration:
		return "a duration like 50ms, 2s or 1m30s"
	case KindEnum:
		return "one of " + strings.Join(f.Enum, ", ")
	}
	return "a non-empty value"
}

// parse converts text to the flag's Go value: bool, int64, uint64,
// time.Duration or string.
func (f *Flag) parse(text string) (any, error) {
	bad := fmt.Errorf("want %s", f.want())
	switch f.Kind {
	case KindBool:
		switch text {
		case "0":
			return false, nil
		case "1":
			return true, nil
		}
		return nil, bad
	case KindInt:
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return nil, bad
		}
		if f.Max > f.Min && (n < f.Min || n > f.Max) {
			return nil, bad
		}
		return n, nil
	case KindSize:
		n, err := bytesize.Parse(text)
		if err != nil {
			return nil, bad
		}
		return n, nil
	case KindDuration:
		d, err := time.ParseDuration(text)
		if err != nil || d < 0 {
			return nil, bad
		}
		return d, nil
	case KindEnum:
		for _, e := range f.Enum {
			if text == e {
				return text, nil
			}
		}
		return nil, bad
	}
	if text == "" {
		return nil, bad
	}
	return text, nil
}

// ParseSize parses a byte count: plain bytes, or a number with a unit K, M,
// G or T (powers of 1024, either case, optionally followed by B or iB). It
// is bytesize.Parse, kept here for existing callers.
func ParseSize(text string) (uint64, error) { return bytesize.Parse(text) }

// FormatSize renders n bytes in the largest unit that divides it exactly
// (1G, 512M, 4096), the inverse of ParseSize.
func FormatSize(n uint64) string { return bytesize.Format(n) }

// Registry is a set of known flags. Subsystems add theirs with Register
// before the command line is parsed.
type Registry struct {
	flags map[string]*Flag
}

// NewRegistry returns a registry holding flags.
func NewRegistry(flags ...Flag) (*Registry, error) {
	r := &Registry{flags: make(map[string]*Flag)}
	for _, f := range flags {
		if err := r.Register(f); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds a flag. The name must start with FlagPrefix, be new, and the
// default must parse.
func (r *Registry) Register(f Flag) error {
	if !strings.HasPrefix(f.Name, FlagPrefix) || len(f.Name) == len(FlagPrefix) {
		return fmt.Errorf("board: register flag %q: name must start with %q", f.Name, FlagPrefix)
	}
	if _, dup := r.flags[f.Name]; dup {
		return fmt.Errorf("board: register flag %s: already registered", f.Name)
	}
	if _, err := f.parse(f.Default); err != nil && !(f.Kind == KindString && f.Default == "") {
		return fmt.Errorf("board: register flag %s: bad default %q: %w", f.Name, f.Default, err)
	}
	r.flags[f.Name] = &f
	return nil
}

// Flags returns the registered flags sorted by name.
func (r *Registry) Flags() []Flag {
	out := make([]Flag, 0, len(r.flags))
	for _, f := range r.flags {
		out = append(out, *f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Parse reads doppel flags from command-line words (os.Args[1:]). An unknown
// doppel.* key or a bad value yields an error (one line, prefixed "board: ")
// and leaves the flag at its default; parsing always goes on. When a flag
// is given twice the last word wins, as on Linux.
func (r *Registry) Parse(words []string) (*Values, []error) {
	v := &Values{reg: r, set: make(map[string]any), given: make(map[string]string)}
	var errs []error
	for _, word := range words {
		key, text, hasValue := strings.Cut(word, "=")
		if !strings.HasPrefix(key, FlagPrefix) {
			continue
		}
		f, ok := r.flags[key]
		if !ok {
			errs = append(errs, fmt.Errorf("board: bad flag %s: unknown doppel flag (the shell's flags command lists them)", word))
			continue
		}
		if !hasValue {
			if f.Kind != KindBool {
				errs = append(errs, fmt.Errorf("board: bad flag %s: want %s", word, f.want()))
				continue
			}
			text = "1"
		}
		val, err := f.parse(text)
		if err != nil {
			errs = append(errs, fmt.Errorf("board: bad flag %s: %w", word, err))
			continue
		}
		v.set[key] = val
		v.given[key] = text
	}
	return v, errs
}

// Values are the flag values of one command line.
type Values struct {
	reg   *Registry
	set   map[string]any    // parsed values given on the command line
	given map[string]string // their text
}

// get returns the value of a registered flag of kind k. Asking for an
// unregistered flag, or with the wrong type, is a programming error.
func (v *Values) get(name string, kinds ...Kind) any {
	f, ok := v.reg.flags[name]
	if !ok {
		panic("board: flag " + name + " is not registered")
	}
	kindOK := false
	for _, k := range kinds {
		kindOK = kindOK || f.Kind == k
	}
	if !kindOK {
		panic(fmt.Sprintf("board: flag %s is a %v", name, f.Kind))
	}
	if val, ok := v.set[name]; ok {
		return val
	}
	val, err := f.parse(f.Default)
	if err != nil { // only an empty KindString default gets here
		return ""
	}
	return val
}

// Bool returns the value of a KindBool flag.
func (v *Values) Bool(name string) bool { return v.get(name, KindBool).(bool) }

// Int returns the value of a KindInt flag.
func (v *Values) Int(name string) int64 { return v.get(name, KindInt).(int64) }

// Size returns the value of a KindSize flag in bytes.
func (v *Values) Size(name string) uint64 { return v.get(name, KindSize).(uint64) }

// Duration returns the value of a KindDuration flag.
func (v *Values) Duration(name string) time.Duration {
	return v.get(name, KindDuration).(time.Duration)
}

// String returns the value of a KindString or KindEnum flag.
func (v *Values) String(name string) string { return v.get(name, KindString, KindEnum).(string) }

// IsSet reports whether the flag was given (with a good value).
func (v *Values) IsSet(name string) bool {
	_, ok := v.set[name]
	return ok
}

// WriteTo lists every registered flag with its current value and help, one a
// line, marking the ones the command line set.
func (v *Values) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for _, f := range v.reg.Flags() {
		value, origin := f.Default, "default"
		if text, ok := v.given[f.Name]; ok {
			value, origin = text, "set"
		}
		if value == "" {
			value = `""`
		}
		layer := ""
		if f.Layer {
			layer = " (boot layer)"
		}
		n, err := fmt.Fprintf(w, "%-26s %-8s %-7s %s%s\n", f.Name, value, origin, f.Help, layer)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
