package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

func TestRunExitStatus(t *testing.T) {
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string // substring
		stderrLine string // substring of stderr
	}{
		{name: "check prints the configuration", args: []string{"-t", "-domain", "example.test"}, code: 0, stdout: "example.test"},
		{name: "check hides the store password", args: []string{"-t", "-store", "redis://u:hunter2@127.0.0.1:6379/0"}, code: 0, stdout: "***"},
		{name: "version", args: []string{"-version"}, code: 0, stdout: "simpled"},
		{name: "unknown flag", args: []string{"-nope"}, code: 2},
		{name: "bad listen value", args: []string{"-t", "-listen", "sctp://127.0.0.1:5060"}, code: 1, stderrLine: "-listen"},
		{name: "bad store", args: []string{"-t", "-store", "mysql://x"}, code: 1, stderrLine: "-store"},
		{name: "port in use", args: []string{"-listen", "udp://" + busy.LocalAddr().String(), "-http", ""}, code: 1, stderrLine: "-listen"},
		{name: "check refuses a public admin API without a token", args: []string{"-t", "-http", "0.0.0.0:8080"}, code: 1, stderrLine: "set admin.token_file (-admin-token-file FILE)"},
		{name: "check refuses pprof without a token", args: []string{"-t", "-pprof"}, code: 1, stderrLine: "-pprof: the profiler shows stacks and memory: it needs admin.token_file"},
		{name: "public admin API without a token does not start", args: []string{"-listen", "udp://127.0.0.1:0", "-http", "[::]:0"}, code: 1, stderrLine: "-http: \"[::]:0\" is not a loopback address"},
		// Refused before any socket is opened: nothing listens beyond loopback.
		{name: "public SIP listener without credentials does not start", args: []string{"-listen", "udp://0.0.0.0:0", "-http", ""}, code: 1, stderrLine: "there is no credential source"},
		{name: "check refuses a public SIP listener without credentials", args: []string{"-t", "-listen", "tcp://[::]:5060"}, code: 1, stderrLine: "set auth.mode: off to run an open server on purpose"},
		{name: "unreachable store", args: []string{"-listen", "udp://127.0.0.1:0", "-http", "", "-store", "redis://127.0.0.1:1/0"}, code: 1, stderrLine: "-store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdout, stdout.String())
			}
			if strings.Contains(stdout.String(), "hunter2") {
				t.Errorf("password printed")
			}
			if tt.stderrLine != "" && !strings.Contains(stderr.String(), tt.stderrLine) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderrLine, stderr.String())
			}
		})
	}
}
