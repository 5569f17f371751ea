package memlimit

import (
	"os"
	"path/filepath"
	"testing"
)

const gib = int64(1) << 30

func TestChoose(t *testing.T) {
	tests := []struct {
		name             string
		envSet           bool
		cgroup, physical int64
		want             int64
		source           Source
	}{
		{name: "env set wins over a cgroup limit", envSet: true, cgroup: 2 * gib, physical: 16 * gib, want: 0, source: FromEnv},
		{name: "env set wins with nothing found", envSet: true, want: 0, source: FromEnv},
		{name: "cgroup limit", cgroup: 2 * gib, physical: 16 * gib, want: 1932735283, source: FromCgroup},
		{name: "cgroup limit, physical memory unknown", cgroup: 2 * gib, want: 1932735283, source: FromCgroup},
		{name: "no cgroup limit", physical: 16 * gib, want: 8 * gib, source: FromPhysical},
		{name: "cgroup limit above the physical memory", cgroup: 64 * gib, physical: 16 * gib, want: 8 * gib, source: FromPhysical},
		{name: "nothing known", want: 0, source: Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, src := Choose(tt.envSet, tt.cgroup, tt.physical)
			if got != tt.want || src != tt.source {
				t.Errorf("Choose(%v, %d, %d) = %d, %s; want %d, %s", tt.envSet, tt.cgroup, tt.physical, got, src, tt.want, tt.source)
			}
		})
	}
}

func TestParseLimit(t *testing.T) {
	tests := []struct {
		name, in string
		want     int64
	}{
		{name: "v2 max", in: "max\n", want: 0},
		{name: "v2 bytes", in: "536870912\n", want: 512 << 20},
		{name: "v1 no limit", in: "9223372036854771712\n", want: 0},
		{name: "v1 no limit, other alignment", in: "9223372036854775807", want: 0},
		{name: "garbage", in: "lots", want: 0},
		{name: "empty", in: "", want: 0},
		{name: "negative", in: "-1", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseLimit([]byte(tt.in)); got != tt.want {
				t.Errorf("parseLimit(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

// writeFile writes content at root/rel, making its directories.
func writeFile(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCgroupLimit(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // under the cgroup root
		self  string            // /proc/self/cgroup
		want  int64
	}{
		{
			name:  "v2 limit on the process's cgroup",
			files: map[string]string{"system.slice/simpled.service/memory.max": "1073741824\n", "system.slice/memory.max": "max\n"},
			self:  "0::/system.slice/simpled.service\n",
			want:  gib,
		},
		{
			name:  "v2 lower limit on a parent",
			files: map[string]string{"a/b/memory.max": "max\n", "a/memory.max": "268435456\n"},
			self:  "0::/a/b\n",
			want:  256 << 20,
		},
		{
			name:  "v2 cgroup max: no limit",
			files: map[string]string{"a/memory.max": "max\n"},
			self:  "0::/a\n",
			want:  0,
		},
		{
			name:  "v2 in a cgroup namespace: the path is / and the limit at the mount",
			files: map[string]string{"memory.max": "2147483648\n"},
			self:  "0::/\n",
			want:  2 * gib,
		},
		{
			name: "v1 memory controller",
			files: map[string]string{
				"memory/docker/abc/memory.limit_in_bytes": "536870912\n",
				"memory/memory.limit_in_bytes":            "9223372036854771712\n",
			},
			self: "12:pids:/docker/abc\n4:cpu,memory:/docker/abc\n0::/\n",
			want: 512 << 20,
		},
		{
			name:  "v1 without a limit",
			files: map[string]string{"memory/x/memory.limit_in_bytes": "9223372036854771712\n"},
			self:  "4:memory:/x\n",
			want:  0,
		},
		{
			name: "no cgroup files at all",
			self: "0::/user.slice\n",
			want: 0,
		},
		{
			name:  "unreadable /proc/self/cgroup content",
			files: map[string]string{"memory.max": "1024\n"},
			self:  "garbage",
			want:  0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for rel, content := range tt.files {
				writeFile(t, root, rel, content)
			}
			if got := CgroupLimit(root, []byte(tt.self)); got != tt.want {
				t.Errorf("CgroupLimit = %d, want %d", got, tt.want)
			}
		})
	}
}

// On Linux the physical memory is always known, so a default limit is always chosen there.
func TestDetectFindsMemory(t *testing.T) {
	cgroup, physical := Detect()
	if physicalMemory() != 0 && physical <= 0 {
		t.Fatalf("Detect physical = %d", physical)
	}
	if cgroup < 0 {
		t.Fatalf("Detect cgroup = %d", cgroup)
	}
}
