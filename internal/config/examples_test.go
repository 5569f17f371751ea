package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// examplesDir holds the configurations the README shows (each must load).
const examplesDir = "../../examples"

func TestExamples(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("found %d files in %s/*.yaml, want at least simpled.yaml and simpled-redis.yaml", len(files), examplesDir)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			if _, err := ParseFile(file); err != nil {
				t.Errorf("ParseFile:\n%v", err)
			}
		})
	}
}

// TestExampleFullConfig keeps examples/simpled.yaml in step with Default: every key present,
// every value the default except the domain.
func TestExampleFullConfig(t *testing.T) {
	path := filepath.Join(examplesDir, "simpled.yaml")
	got, err := ParseFile(path)
	if err != nil {
		t.Fatalf("ParseFile: %v", err)
	}
	want := Default()
	want.Domains = []string{"example.test"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s\n got %+v\nwant Default() with domain example.test: %+v", path, got, want)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	src := sources{}
	o := Default()
	decode(data, path, &o, src, &Errors{})
	for _, k := range allKeys("", optionFields) {
		if _, ok := src[k]; !ok {
			t.Errorf("%s lacks key %s", path, k)
		}
	}
}
