package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseStoreURL(t *testing.T) {
	tests := []struct {
		name     string
		url      string
		want     StoreURL
		errorHas string
	}{
		{name: "memory", url: "memory", want: StoreURL{Scheme: "memory"}},
		{name: "redis", url: "redis://127.0.0.1:6379/0", want: StoreURL{Scheme: "redis", Addrs: []string{"127.0.0.1:6379"}}},
		{name: "redis db and password", url: "redis://:secret@r.example.test:6380/3", want: StoreURL{Scheme: "redis", Password: "secret", Addrs: []string{"r.example.test:6380"}, DB: 3}},
		{name: "redis ACL user, encoded password", url: "redis://simpled:p%40ss%2Fw@[::1]:6379/1", want: StoreURL{Scheme: "redis", Username: "simpled", Password: "p@ss/w", Addrs: []string{"[::1]:6379"}, DB: 1}},
		{name: "default port, no db", url: "rediss://redis.example.test", want: StoreURL{Scheme: "rediss", Addrs: []string{"redis.example.test:6379"}}},
		{name: "default port IPv6", url: "redis://[::1]/", want: StoreURL{Scheme: "redis", Addrs: []string{"[::1]:6379"}}},
		{name: "cluster", url: "redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7001,node3", want: StoreURL{Scheme: "redis+cluster", Username: "u", Password: "p", Addrs: []string{"10.0.0.1:7000", "10.0.0.2:7001", "node3:6379"}}},
		{name: "cluster db 0", url: "redis+cluster://10.0.0.1:7000/0", want: StoreURL{Scheme: "redis+cluster", Addrs: []string{"10.0.0.1:7000"}}},
		{name: "empty", url: "", errorHas: "want memory, redis://"},
		{name: "Memory is not memory", url: "Memory", errorHas: "want memory, redis://"},
		{name: "unknown scheme", url: "mongodb://h:1/0", errorHas: `unknown scheme "mongodb"`},
		{name: "no host", url: "redis:///0", errorHas: "missing HOST:PORT"},
		{name: "several hosts without cluster", url: "redis://a:1,b:2/0", errorHas: "several hosts need redis+cluster://"},
		{name: "empty cluster host", url: "redis+cluster://a:1,,b:2", errorHas: "empty host"},
		{name: "cluster db", url: "redis+cluster://a:1/2", errorHas: "redis cluster has database 0 only"},
		{name: "bad db", url: "redis://a:1/zero", errorHas: `database "zero" is not a number >= 0`},
		{name: "negative db", url: "redis://a:1/-1", errorHas: `database "-1"`},
		{name: "port 0", url: "redis://a:0/0", errorHas: "port 0 is not a server port"},
		{name: "bad port", url: "redis://a:b/0", errorHas: "invalid port"},
		{name: "query", url: "redis://a:1/0?dial_timeout=1s", errorHas: "unexpected query or fragment"},
		{name: "bad escape masks the password", url: "redis://u:se%zzcret@a:1/0", errorHas: `"redis://u:***@a:1/0"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStoreURL(tt.url)
			if tt.errorHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errorHas) {
					t.Fatalf("ParseStoreURL(%q) error = %v, want one containing %q", tt.url, err, tt.errorHas)
				}
				if strings.Contains(err.Error(), "cret") {
					t.Errorf("error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseStoreURL(%q): %v", tt.url, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseStoreURL(%q) = %+v, want %+v", tt.url, got, tt.want)
			}
		})
	}
}

func TestRedactStore(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "memory", in: "memory", want: "memory"},
		{name: "no user info", in: "redis://127.0.0.1:6379/0", want: "redis://127.0.0.1:6379/0"},
		{name: "password only", in: "redis://:hunter2@h:6379/0", want: "redis://:***@h:6379/0"},
		{name: "user and password", in: "rediss://app:hunter2@h:6379/0", want: "rediss://app:***@h:6379/0"},
		{name: "user only", in: "redis://app@h:6379/0", want: "redis://app@h:6379/0"},
		{name: "@ in password", in: "redis://app:a@b@h:6379/0", want: "redis://app:***@h:6379/0"},
		{name: "cluster", in: "redis+cluster://:pw@a:1,b:2", want: "redis+cluster://:***@a:1,b:2"},
		{name: "@ in the path is not user info", in: "redis://h:1/x@y", want: "redis://h:1/x@y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := redactStore(tt.in); got != tt.want {
				t.Errorf("redactStore(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
