package admin

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// muxPatterns returns every pattern this package registers on a mux ("GET /x/{y}" or "/x/"), read
// from the source so that a route added behind an option is not missed.
func muxPatterns(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: a route whose pattern is not a literal cannot be checked against openapi.json", fset.Position(call.Pos()))
				return true
			}
			p, _ := strconv.Unquote(lit.Value)
			out = append(out, p)
			return true
		})
	}
	return out
}

// The contract and the mux cannot drift: every registered route is in openapi.json with its
// method (a pattern without one, pprof's, accepts any method and is documented as GET), and
// every operation of openapi.json is registered.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q, want 3.x", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	var registered []string
	for _, r := range muxPatterns(t) {
		if !strings.Contains(r, " ") {
			r = "GET " + r
		}
		registered = append(registered, r)
	}
	slices.Sort(documented)
	slices.Sort(registered)
	for _, r := range registered {
		if !slices.Contains(documented, r) {
			t.Errorf("%s is registered but not in openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(registered, d) {
			t.Errorf("%s is in openapi.json but not registered", d)
		}
	}
	if len(registered) < 10 {
		t.Fatalf("found only %d routes in the source: %v", len(registered), registered)
	}
}

// The contract is served at /api/v1/openapi.json behind the guard: the token when one is set.
func TestOpenAPIServed(t *testing.T) {
	f := newFixture(t, withToken)
	f.expect(t, http.StatusUnauthorized, "GET", "/api/v1/openapi.json", "")
	body := f.expect(t, http.StatusOK, "GET", "/api/v1/openapi.json", "", bearer...)
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil || doc["openapi"] == nil {
		t.Fatalf("not an OpenAPI document (%v): %.200s", err, body)
	}
}
