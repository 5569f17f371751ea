package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/routes"

	"gopkg.in/yaml.v3"
)

// ParseFile reads the YAML file at path and parses it as Parse does.
func ParseFile(path string) (Options, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Options{}, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

// ParseString parses a YAML document given as a string, for tests; error positions carry no
// file name.
func ParseString(s string) (Options, error) { return Parse([]byte(s), "") }

// Parse applies the YAML document data to Default() and validates the result. Keys left out
// keep their defaults; an empty document gives Default(). filename labels errors, and relative
// paths in users, tls_cert and tls_key are taken from its directory (made absolute); with
// filename "" they stay relative to the working directory.
//
// The error, when not nil, is a *Errors listing every problem at once: YAML syntax, unknown
// keys (with a suggestion when one is close), values of the wrong type, bad values and
// cross-field conflicts, each at the file:line:col of the key or value at fault. The Options
// are returned even then, with the values that could be decoded.
func Parse(data []byte, filename string) (Options, error) {
	o := Default()
	src := sources{}
	errs := &Errors{}
	decode(data, filename, &o, src, errs)
	o.validate(src, errs)
	return o, errs.err()
}

// sources remembers where each key's value came from, so that validation reports an error at
// that value. Keys are YAML paths ("registrar.min_expires"); list elements are "listen[1]".
// A key absent from the map has its default value (or was set in code).
type sources map[string]source

type source struct {
	file      string
	line, col int
	flag      string // set when the value came from this flag ("-listen")
}

// errorf builds an Error for key at the position its value came from. For a list element
// ("listen[1]") it falls back to the list when the element has no position of its own.
//
// A key within a list element ("proxy.routes[1].match.user") is kept whole, and falls back to
// the element's position, then the list's.
func (s sources) errorf(key, format string, args ...any) *Error {
	base, rest, _ := strings.Cut(key, "[")
	name := base
	if _, within, _ := strings.Cut(rest, "]"); within != "" {
		name = key
	}
	src, ok := s[key]
	if elem, _, cut := strings.Cut(key, "]."); !ok && cut {
		src, ok = s[elem+"]"]
	}
	if !ok {
		src = s[base]
	}
	e := &Error{Key: name, Msg: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if err, ok := a.(error); ok {
			e.Err = err
		}
	}
	if src.flag != "" {
		e.Key = src.flag
		return e
	}
	e.File, e.Line, e.Col = src.file, src.line, src.col
	return e
}

// setFlag records that key now comes from flag, forgetting any file positions of it and its
// elements.
func (s sources) setFlag(key, flag string) {
	for k := range s {
		if k == key || strings.HasPrefix(k, key+"[") {
			delete(s, k)
		}
	}
	s[key] = source{flag: flag}
}

// field describes one YAML key of Options, found from the yaml struct tags.
type field struct {
	key      string
	index    []int
	typ      reflect.Type
	children []field // for a nested struct
	elem     []field // for a list of structs (proxy.routes): each element's keys
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	optionFields = fieldsOf(reflect.TypeFor[Options]())
)

func fieldsOf(t reflect.Type) []field {
	var out []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		key, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if key == "" || key == "-" {
			continue
		}
		f := field{key: key, index: sf.Index, typ: sf.Type}
		switch {
		case sf.Type.Kind() == reflect.Struct:
			f.children = fieldsOf(sf.Type)
		case sf.Type.Kind() == reflect.Slice && sf.Type.Elem().Kind() == reflect.Struct:
			f.elem = fieldsOf(sf.Type.Elem())
		}
		out = append(out, f)
	}
	return out
}

// allKeys returns every key path, sections included.
func allKeys(prefix string, fields []field) []string {
	var out []string
	for _, f := range fields {
		out = append(out, prefix+f.key)
		out = append(out, allKeys(prefix+f.key+".", f.children)...)
	}
	return out
}

// suggestable is allKeys with the keys of list elements ("proxy.routes[].to"), for
// suggestions.
func suggestable(prefix string, fields []field) []string {
	var out []string
	for _, f := range fields {
		out = append(out, prefix+f.key)
		out = append(out, suggestable(prefix+f.key+".", f.children)...)
		out = append(out, suggestable(prefix+f.key+"[].", f.elem)...)
	}
	return out
}

type decoder struct {
	file string
	src  sources
	errs *Errors
}

func (d *decoder) errorAt(n *yaml.Node, key, format string, args ...any) {
	d.errs.add(&Error{File: d.file, Line: n.Line, Col: n.Column, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// yamlLine finds the line number in a yaml.v3 syntax error ("yaml: line 3: ...").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// decode applies data to o, recording value positions in src and problems in errs.
func decode(data []byte, file string, o *Options, src sources, errs *Errors) {
	d := &decoder{file: file, src: src, errs: errs}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // empty document
			return
		}
		e := &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
			e.Msg = m[2]
		}
		errs.add(e)
		return
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		e := &Error{File: file, Msg: "only one YAML document is allowed"}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			e.Line, _ = strconv.Atoi(m[1])
		}
		errs.add(e)
	default:
		errs.add(&Error{File: file, Line: next.Line, Col: next.Column, Msg: "only one YAML document is allowed"})
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return
		}
		root = root.Content[0]
	}
	d.mapping(root, reflect.ValueOf(o).Elem(), "", optionFields)
	o.Domains = lowerAll(o.Domains)
	if file != "" {
		dir := filepath.Dir(file)
		for _, p := range []struct {
			key  string
			path *string
		}{{"users", &o.UsersFile}, {"tls_cert", &o.TLSCert}, {"tls_key", &o.TLSKey},
			{"tls_client_ca", &o.TLSClientCA}, {"tls_ca", &o.TLSCA}, {"admin.token_file", &o.Admin.TokenFile}} {
			if _, set := src[p.key]; set && *p.path != "" && !filepath.IsAbs(*p.path) {
				*p.path = absPath(filepath.Join(dir, *p.path))
			}
		}
	}
}

// absPath makes p absolute so that -t output means the same file from any directory; p is
// kept as is in the unlikely case the working directory is unknown.
func absPath(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

func lowerAll(s []string) []string {
	if s == nil {
		return nil
	}
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strings.ToLower(v)
	}
	return out
}

func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// describe names a node's kind for "want X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!int":
			return "integer " + n.Value
		case "!!float":
			return "number " + n.Value
		case "!!bool":
			return "boolean " + n.Value
		case "!!null":
			return "nothing"
		case "!!str":
			return strconv.Quote(n.Value)
		}
		return n.ShortTag() + " " + strconv.Quote(n.Value)
	}
	return "an unexpected node"
}

// mapping decodes the YAML mapping n into the struct v whose keys are fields.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, prefix string, fields []field) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		what := "the configuration"
		if prefix != "" {
			what = strings.TrimSuffix(prefix, ".")
		}
		d.errorAt(n, strings.TrimSuffix(prefix, "."), "want a mapping of keys to values for %s, got %s", what, describe(n))
		return
	}
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorAt(k, strings.TrimSuffix(prefix, "."), "want a key name, got %s", describe(k))
			continue
		}
		path := prefix + k.Value
		if prev, dup := seen[k.Value]; dup {
			d.errorAt(k, path, "duplicate key, first set at line %d", prev.Line)
			continue
		}
		seen[k.Value] = k
		f, ok := lookup(fields, k.Value)
		if !ok {
			d.errorAt(k, path, "unknown key%s", suggest(prefix, k.Value))
			continue
		}
		val = resolve(val)
		d.src[path] = source{file: d.file, line: val.Line, col: val.Column}
		d.value(val, v.FieldByIndex(f.index), path, f)
	}
}

func lookup(fields []field, key string) (field, bool) {
	for _, f := range fields {
		if f.key == key {
			return f, true
		}
	}
	return field{}, false
}

// value decodes n into v, a field of type f.typ.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, f field) {
	switch {
	case f.children != nil:
		d.mapping(n, v, path+".", f.children)
	case f.typ == durationType:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			d.errorAt(n, path, "want a duration such as \"1s\" or \"500ms\", got %s", describe(n))
			return
		}
		dur, err := time.ParseDuration(n.Value)
		if err != nil {
			d.errorAt(n, path, "want a duration such as \"1s\" or \"500ms\", got %q", n.Value)
			return
		}
		v.SetInt(int64(dur))
	case f.typ.Kind() == reflect.String:
		s, ok := d.str(n, path)
		if ok {
			v.SetString(s)
		}
	case f.typ.Kind() == reflect.Int:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			d.errorAt(n, path, "want an integer, got %s", describe(n))
			return
		}
		var i int
		if err := n.Decode(&i); err != nil {
			d.errorAt(n, path, "integer %s out of range", n.Value)
			return
		}
		v.SetInt(int64(i))
	case f.typ.Kind() == reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!float" && n.ShortTag() != "!!int") {
			d.errorAt(n, path, "want a number such as 0.5, got %s", describe(n))
			return
		}
		var x float64
		if err := n.Decode(&x); err != nil {
			d.errorAt(n, path, "want a number such as 0.5, got %q", n.Value)
			return
		}
		v.SetFloat(x)
	case f.typ.Kind() == reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			d.errorAt(n, path, "want true or false, got %s", describe(n))
			return
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.errorAt(n, path, "want true or false, got %q", n.Value)
			return
		}
		v.SetBool(b)
	case f.typ.Kind() == reflect.Slice && f.typ.Elem().Kind() == reflect.String:
		d.list(n, v, path)
	case f.elem != nil:
		d.structs(n, v, path, f)
	default:
		// Only reachable when a field of a new type is added to Options.
		d.errorAt(n, path, "internal error: no decoder for %s", f.typ)
	}
}

// str decodes a scalar as a string. Numbers and booleans are taken as written (node_id: 7 is
// "7"); null (key: with no value) is "".
func (d *decoder) str(n *yaml.Node, path string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorAt(n, path, "want a string, got %s", describe(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!null":
		return "", true
	case "!!str", "!!int", "!!float", "!!bool":
		return n.Value, true
	}
	d.errorAt(n, path, "want a string, got %s", describe(n))
	return "", false
}

// list decodes a list of strings; a single string is taken as a list of one.
func (d *decoder) list(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.ScalarNode && !isNull(n) {
		if s, ok := d.str(n, path); ok {
			v.Set(reflect.ValueOf([]string{s}))
		}
		return
	}
	if isNull(n) {
		v.Set(reflect.ValueOf([]string{}))
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorAt(n, path, "want a list of strings, got %s", describe(n))
		return
	}
	out := make([]string, 0, len(n.Content))
	ok := true
	for _, e := range n.Content {
		e = resolve(e)
		s, good := d.str(e, path)
		if !good {
			ok = false
			continue
		}
		d.src[fmt.Sprintf("%s[%d]", path, len(out))] = source{file: d.file, line: e.Line, col: e.Column}
		out = append(out, s)
	}
	if ok {
		v.Set(reflect.ValueOf(out))
	}
}

// structs decodes a list of mappings (proxy.routes) into a slice of structs, each element
// starting from its default (elementDefault).
func (d *decoder) structs(n *yaml.Node, v reflect.Value, path string, f field) {
	if isNull(n) {
		v.Set(reflect.MakeSlice(f.typ, 0, 0))
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.errorAt(n, path, "want a list of mappings, got %s", describe(n))
		return
	}
	out := reflect.MakeSlice(f.typ, 0, len(n.Content))
	for i, e := range n.Content {
		e = resolve(e)
		key := fmt.Sprintf("%s[%d]", path, i)
		d.src[key] = source{file: d.file, line: e.Line, col: e.Column}
		elem := reflect.New(f.typ.Elem()).Elem()
		elem.Set(elementDefault(f.typ.Elem()))
		d.mapping(e, elem, key+".", f.elem)
		out = reflect.Append(out, elem)
	}
	v.Set(out)
}

// elementDefault is the default of one element of a list of structs (DefaultRoute for
// proxy.routes), the zero value for a type with none.
func elementDefault(t reflect.Type) reflect.Value {
	if t == reflect.TypeFor[routes.Rule]() {
		return reflect.ValueOf(DefaultRoute())
	}
	return reflect.Zero(t)
}

// listIndex is the index of a list element in a key path.
var listIndex = regexp.MustCompile(`\[\d+\]`)

// suggest returns " (did you mean ...?)" for an unknown key when a known key is close: same
// name with '-' for '_' or other case, an edit distance of at most 2 (1 for short names), or
// the same name in another section (min_expires at the top → registrar.min_expires).
func suggest(prefix, key string) string {
	prefix = listIndex.ReplaceAllString(prefix, "[]") // proxy.routes[2]. → proxy.routes[].
	keys := suggestable("", optionFields)
	norm := strings.ToLower(strings.ReplaceAll(key, "-", "_"))
	type cand struct {
		key  string
		dist int
	}
	var best []cand
	for _, k := range keys {
		parent, leaf := "", k
		if i := strings.LastIndex(k, "."); i >= 0 {
			parent, leaf = k[:i+1], k[i+1:]
		}
		dist := -1
		switch {
		case parent == prefix && leaf == norm:
			dist = 0
		case parent != prefix && leaf == norm:
			dist = 1
		case parent == prefix:
			max := 2
			if len(norm) <= 4 {
				max = 1
			}
			if dd := levenshtein(norm, leaf); dd <= max {
				dist = dd
			}
		}
		if dist >= 0 {
			best = append(best, cand{k, dist})
		}
	}
	if len(best) == 0 {
		return ""
	}
	sort.SliceStable(best, func(i, j int) bool { return best[i].dist < best[j].dist })
	k := best[0].key
	parent := ""
	if i := strings.LastIndex(k, "."); i >= 0 {
		parent = k[:i+1]
	}
	switch {
	case parent == prefix:
		k = strings.TrimPrefix(k, prefix)
	case parent == "":
		k += " at the top level"
	}
	return fmt.Sprintf(" (did you mean %s?)", k)
}

// levenshtein is the edit distance between a and b (bytes; keys are ASCII).
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
