package base

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/simpled/simpled/"

// floors orders the folders of the repository: a package may import packages of its own floor
// or a lower one, never a higher one (docs/architecture.md, "Three floors"). Test files of an
// external _test package may import the wiring's test harness, so only non-test files count.
var floors = []struct {
	name    string
	folders []string
}{
	{"foundation", []string{"base", "pidf", "cpim", "storage"}},
	{"stages and services", []string{"sanity", "auth", "registrar", "presence", "proxy", "delivery", "offline", "dns", "msgcheck", "cluster", "routes"}},
	{"wiring", []string{"internal", "cmd"}},
}

// floorOf returns the floor of a package path relative to the module, or -1 for a folder the
// table does not name (examples, bench: programs, not floors).
func floorOf(rel string) int {
	top, _, _ := strings.Cut(rel, "/")
	for i, f := range floors {
		for _, folder := range f.folders {
			if top == folder {
				return i
			}
		}
	}
	return -1
}

func TestFloors(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); name == "testdata" || (strings.HasPrefix(name, ".") && path != root) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		from := floorOf(filepath.ToSlash(rel))
		if from < 0 {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !strings.HasPrefix(p, module) {
				continue
			}
			if to := floorOf(strings.TrimPrefix(p, module)); to > from {
				t.Errorf("%s (%s) imports %s (%s): imports must go down", filepath.Join(rel, filepath.Base(path)),
					floors[from].name, p, floors[to].name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 50 {
		t.Fatalf("checked only %d files: is the walk rooted at the repository?", checked)
	}
}
