package sdk

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/flaredb/flaredb/core/engine"
)

// OptionParser reads typed engine options from Params.Options into the
// fields of an engine's own options struct, collecting every problem: a
// value that does not parse, and (in Err) every option name nobody asked
// for, which is most often a typo in the host's configuration. Missing
// options leave their destination unchanged (its default). It is used by
// one goroutine.
type OptionParser struct {
	opts map[string]string
	used map[string]bool
	errs []error
}

// OptionParser returns a parser over p.Options.
func (p Params) OptionParser() *OptionParser {
	return &OptionParser{opts: p.Options, used: map[string]bool{}}
}

func (o *OptionParser) lookup(name string) (string, bool) {
	o.used[name] = true
	v, ok := o.opts[name]
	return strings.TrimSpace(v), ok
}

func (o *OptionParser) bad(name, v, want string, err error) {
	o.errs = append(o.errs, fmt.Errorf("%w: option %s=%q: want %s: %w", engine.ErrInvalidArgument, name, v, want, err))
}

// String sets *dst to the option's value, if it is present.
func (o *OptionParser) String(name string, dst *string) {
	if v, ok := o.lookup(name); ok {
		*dst = v
	}
}

// Bool sets *dst to the option's value ("true", "false", "1", "0", ...), if
// it is present.
func (o *OptionParser) Bool(name string, dst *bool) {
	if v, ok := o.lookup(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			o.bad(name, v, "a boolean", err)
			return
		}
		*dst = b
	}
}

// Int sets *dst to the option's value, a decimal integer, if it is present.
func (o *OptionParser) Int(name string, dst *int) {
	if v, ok := o.lookup(name); ok {
		n, err := strconv.ParseInt(v, 10, strconv.IntSize)
		if err != nil {
			o.bad(name, v, "an integer", err)
			return
		}
		*dst = int(n)
	}
}

// Int64 sets *dst to the option's value, a decimal integer, if it is
// present.
func (o *OptionParser) Int64(name string, dst *int64) {
	if v, ok := o.lookup(name); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			o.bad(name, v, "an integer", err)
			return
		}
		*dst = n
	}
}

// Float64 sets *dst to the option's value, a decimal number, if it is
// present.
func (o *OptionParser) Float64(name string, dst *float64) {
	if v, ok := o.lookup(name); ok {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			o.bad(name, v, "a number", err)
			return
		}
		*dst = f
	}
}

// Duration sets *dst to the option's value, a Go duration such as "10m"
// or "1.5s", if it is present.
func (o *OptionParser) Duration(name string, dst *time.Duration) {
	if v, ok := o.lookup(name); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			o.bad(name, v, "a duration such as 10s or 5m", err)
			return
		}
		*dst = d
	}
}

// Err returns every problem found so far, joined into one error wrapping
// engine.ErrInvalidArgument, including the names of options present in
// Params.Options that no method of o asked for; nil if there is none. Call
// it after reading every option.
func (o *OptionParser) Err() error {
	errs := slices.Clone(o.errs)
	var unknown []string
	for name := range o.opts {
		if !o.used[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		known := make([]string, 0, len(o.used))
		for name := range o.used {
			known = append(known, name)
		}
		slices.Sort(known)
		errs = append(errs, fmt.Errorf("%w: unknown option(s) %s (known: %s)", engine.ErrInvalidArgument,
			strings.Join(unknown, ", "), strings.Join(known, ", ")))
	}
	return errors.Join(errs...)
}
