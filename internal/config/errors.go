package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrUsage marks a command line that cannot be parsed (an unknown flag, a missing flag value,
// a stray argument): the flag package has already printed the problem and the usage on the
// given stderr, and the caller exits 2. When the user asked for -h, the error also matches
// flag.ErrHelp, and the caller exits 0.
var ErrUsage = errors.New("usage")

// Error is one configuration problem at a position in a file or in a flag.
type Error struct {
	// File is the configuration file name; "" for a flag, for ParseString input and for
	// options built in code.
	File string
	// Line and Col locate the offending key or value, counting from 1; 0 when unknown
	// (YAML syntax errors give a line only).
	Line, Col int
	// Key is the YAML key path (listen, registrar.min_expires) or, for a value from the
	// command line, the flag (-listen).
	Key string
	// Msg says what is wrong, lower case.
	Msg string
	// Err is the underlying cause when there is one (e.g. fs.ErrNotExist), for errors.Is.
	Err error
}

// Error formats e as FILE:LINE:COL: KEY: MSG, leaving out the parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	pos := e.File
	if e.Line > 0 {
		if pos != "" {
			pos += ":"
		}
		pos += fmt.Sprint(e.Line)
		if e.Col > 0 {
			pos += fmt.Sprintf(":%d", e.Col)
		}
	}
	if pos != "" {
		b.WriteString(pos)
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// Errors is every problem found in one configuration, sorted: positioned errors by file, line
// and column first, then the others (flags, cross-field checks on built-in values) in the
// order found.
type Errors struct {
	// List holds the errors; it is never empty in a returned *Errors.
	List []*Error
}

// Error returns one line per error.
func (e *Errors) Error() string {
	lines := make([]string, len(e.List))
	for i, err := range e.List {
		lines[i] = err.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the errors, for errors.Is and errors.As.
func (e *Errors) Unwrap() []error {
	out := make([]error, len(e.List))
	for i, err := range e.List {
		out[i] = err
	}
	return out
}

func (e *Errors) add(err *Error) { e.List = append(e.List, err) }

// err returns e sorted, or nil when it holds nothing, so that a nil *Errors never hides in a
// non-nil error.
func (e *Errors) err() error {
	if len(e.List) == 0 {
		return nil
	}
	sort.SliceStable(e.List, func(i, j int) bool {
		a, b := e.List[i], e.List[j]
		if (a.Line > 0) != (b.Line > 0) {
			return a.Line > 0
		}
		if a.Line == 0 {
			return false
		}
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	return e
}
