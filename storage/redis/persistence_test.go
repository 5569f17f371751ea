package redis_test

import (
	"testing"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/storage/redis"
)

// TestPersistence: Persistence reports what the server was started with, for one server and
// for a cluster; a server that refuses CONFIG is an error, not "durable".
func TestPersistence(t *testing.T) {
	tests := []struct {
		name    string
		opts    []redistest.Option
		cluster bool
		want    redis.Persistence
	}{
		{name: "none", want: redis.Persistence{}},
		{name: "aof", opts: []redistest.Option{redistest.WithPersistence()}, want: redis.Persistence{AppendOnly: true}},
		{name: "snapshots", opts: []redistest.Option{redistest.WithArgs("--save", "60 1")}, want: redis.Persistence{Save: "60 1"}},
		{name: "cluster", opts: []redistest.Option{redistest.WithCluster()}, cluster: true, want: redis.Persistence{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, tc.opts...)
			url := srv.URL()
			if tc.cluster {
				url = srv.ClusterURL()
			}
			p, err := connect(t, url, redis.Options{}).Persistence(t.Context())
			if err != nil {
				t.Fatalf("Persistence: %v", err)
			}
			p.Addr = ""
			if p != tc.want || p.Durable() != (tc.want.AppendOnly || tc.want.Save != "") {
				t.Errorf("Persistence = %+v, want %+v", p, tc.want)
			}
		})
	}
	t.Run("config renamed", func(t *testing.T) {
		srv := redistest.Start(t, redistest.WithArgs("--rename-command", "CONFIG", ""))
		if p, err := connect(t, srv.URL(), redis.Options{}).Persistence(t.Context()); err == nil {
			t.Fatalf("Persistence = %+v, want an error", p)
		}
	})
}
