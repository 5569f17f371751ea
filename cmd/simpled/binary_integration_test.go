package main

import (
	"net"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBinaryListensAndStopsOnSIGTERM builds simpled, starts it on free ports, reads the bound
// listener URLs from its start-up log (docs/cli.md), registers over UDP, and stops it with SIGTERM:
// exit status 0 within the 5 s drain.
func TestBinaryListensAndStopsOnSIGTERM(t *testing.T) {
	proc := startSimpled(t, buildSimpled(t), "-listen", "udp://127.0.0.1:0", "-listen", "tcp://127.0.0.1:0",
		"-http", "127.0.0.1:0", "-domain", "example.test", "-log-format", "json")
	cmd, lines := proc.Cmd, proc.Lines
	urls := regexp.MustCompile(`"listener":"((?:udp|tcp)://[^"]+)"`)
	var udp string
	bound := 0
	deadline := time.After(10 * time.Second)
	for bound < 2 {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("simpled exited during start-up")
			}
			if m := urls.FindStringSubmatch(line); m != nil {
				bound++
				if strings.HasPrefix(m[1], "udp://") {
					udp = strings.TrimPrefix(m[1], "udp://")
				}
				if strings.HasSuffix(m[1], ":0") {
					t.Errorf("listener logged with port 0: %s", line)
				}
			}
		case <-deadline:
			t.Fatal("no listener lines within 10 s")
		}
	}

	c, err := net.Dial("udp", udp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP " + c.LocalAddr().String() + ";branch=z9hG4bKbin1;rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=1\r\nTo: <sip:alice@example.test>\r\n" +
		"Call-ID: bin1\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200 ") {
		t.Fatalf("REGISTER answer: %v %q", err, buf[:n])
	}

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range lines { // drain
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
		if d := time.Since(start); d > 6*time.Second {
			t.Errorf("shutdown took %v", d)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("simpled did not exit within 8 s of SIGTERM")
	}
}
