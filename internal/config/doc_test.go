package config

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/routes"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite docs/configuration.md from internal/config")

// docPath is the configuration reference, generated from this package.
var docPath = filepath.Join("..", "..", "docs", "configuration.md")

// TestConfigurationDoc keeps docs/configuration.md what this package says: every key with its
// default and the doc comment of its Options field, and the flags as -h prints them. A key,
// default or comment changed without the document fails here (make test, CI):
//
//	go test ./internal/config -run TestConfigurationDoc -update-docs
func TestConfigurationDoc(t *testing.T) {
	got := configurationDoc(t)
	if *updateDocs {
		if err := os.WriteFile(docPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("docs/configuration.md is not what internal/config says: run\n\tgo test ./internal/config -run TestConfigurationDoc -update-docs")
	}
}

// configFiles are the files declaring the sections of Options: config.go, and the setup.go of
// each stage that owns its section.
var configFiles = []string{"config.go", "../../registrar/setup.go", "../../auth/setup.go", "../../presence/setup.go", "../../presence/mwi/setup.go", "../../routes/routes.go", "../../presence/reg/setup.go", "../../presence/dialog/dialog.go"}

// configurationDoc renders the reference from the Options type, Default() and the doc comments
// of configFiles.
func configurationDoc(t *testing.T) []byte {
	t.Helper()
	comments := map[string]string{}
	for _, file := range configFiles {
		maps.Copy(comments, fieldComments(t, file))
	}
	var b bytes.Buffer
	b.WriteString("# Configuration reference\n\n" +
		"Generated from `internal/config` (`go test ./internal/config -run TestConfigurationDoc -update-docs`);\n" +
		"a test fails when it is stale. Every key of the YAML file given with `-config`, with its default\n" +
		"(`simpled -t` prints the effective values; `examples/simpled.yaml` has every key). Flags override\n" +
		"the file. docs/cli.md is the command-line contract, docs/security.md and docs/limits.md say why\n" +
		"the security settings and limits are what they are.\n\n" +
		"## Keys\n\n| key | default | meaning |\n| --- | --- | --- |\n")
	writeKeys(&b, reflect.ValueOf(Default()), "", comments)
	var usage bytes.Buffer
	if _, _, err := FromArgs([]string{"-h"}, &usage); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	b.WriteString("\n## Flags\n\n```\n" + usage.String() + "```\n")
	return b.Bytes()
}

func writeKeys(b *bytes.Buffer, v reflect.Value, prefix string, comments map[string]string) {
	t := v.Type()
	for i := range t.NumField() {
		sf := t.Field(i)
		key, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if key == "" || key == "-" {
			continue
		}
		fv := v.Field(i)
		if sf.Type.Kind() == reflect.Struct {
			writeKeys(b, fv, prefix+key+".", comments)
			continue
		}
		doc := strings.Join(strings.Fields(comments[path.Base(t.PkgPath())+"."+t.Name()+"."+sf.Name]), " ")
		doc = strings.ReplaceAll(doc, "|", "\\|")
		fmt.Fprintf(b, "| `%s` | `%s` | %s |\n", prefix+key, defaultText(fv), doc)
		if sf.Type == reflect.TypeFor[[]routes.Rule]() {
			// A list of mappings: the keys of each entry, with the entry's defaults.
			writeKeys(b, reflect.ValueOf(DefaultRoute()), prefix+key+"[].", comments)
		}
	}
}

// defaultText renders a default as YAML would read it back.
func defaultText(v reflect.Value) string {
	switch {
	case v.Type() == reflect.TypeFor[time.Duration]():
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.String:
		if v.String() == "" {
			return `""`
		}
		return v.String()
	case v.Kind() == reflect.Slice:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = fmt.Sprint(v.Index(i).Interface())
		}
		return "[" + strings.Join(items, ", ") + "]"
	case v.Kind() == reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	}
	return fmt.Sprint(v.Interface())
}

// fieldComments maps "package.Type.Field" to the doc comment of each struct field declared in
// file.
func fieldComments(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			return false
		}
		for _, fld := range st.Fields.List {
			for _, name := range fld.Names {
				out[f.Name.Name+"."+ts.Name.Name+"."+name.Name] = fld.Doc.Text()
			}
		}
		return false
	})
	return out
}
