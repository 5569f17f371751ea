package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/bench/internal/child"
)

// target is a running server under test.
type target struct {
	name    string
	proc    *child.Proc
	sip     netip.AddrPort
	metrics string // base URL of /metrics, "" when the server has none (Kamailio)
	logPath string
	// memory returns the server's resident memory now: simpled's VmRSS, the PSS of
	// Kamailio's processes together.
	memory func() int64
	// peak returns the highest resident memory the kernel saw (simpled's VmHWM), 0 when it
	// cannot tell (Kamailio: the samples' peak is used).
	peak func() int64
}

func (t *target) stop() error {
	_, _, err := t.proc.Stop(10 * time.Second)
	return err
}

// startSimpled writes a users file for the legitimate users and a configuration (auth
// required, JSON logs) into dir and starts bin on a free loopback UDP port.
func startSimpled(ctx context.Context, bin, store, dir string) (*target, error) {
	sipPort, err := child.FreeUDPPort()
	if err != nil {
		return nil, err
	}
	httpPort, err := child.FreeTCPPort()
	if err != nil {
		return nil, err
	}
	var users strings.Builder
	for u, pw := range passwords {
		users.WriteString(u + "@" + domain + ":" + pw + "\n")
	}
	usersFile := filepath.Join(dir, "users.txt")
	if err := os.WriteFile(usersFile, []byte(users.String()), 0o600); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf("listen: [udp://127.0.0.1:%d]\ndomain: [%s]\nstore: %q\nhttp: 127.0.0.1:%d\nusers: %q\nlog_format: json\nlog_level: info\nauth:\n  mode: required\n",
		sipPort, domain, store, httpPort, usersFile)
	cfgFile := filepath.Join(dir, "simpled.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "simpled.log")
	p, err := child.Start("simpled", bin, []string{"-config", cfgFile}, dir, logPath)
	if err != nil {
		return nil, err
	}
	base := "http://127.0.0.1:" + strconv.Itoa(httpPort)
	if err := child.WaitHTTP(ctx, base+"/readyz", p, 20*time.Second); err != nil {
		_, _, _ = p.Stop(5 * time.Second)
		return nil, fmt.Errorf("simpled: %w; its log ends:\n%s", err, child.Tail(logPath, 10))
	}
	pid := p.PID()
	return &target{
		name: "simpled", proc: p, metrics: base, logPath: logPath,
		sip: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sipPort)),
		memory: func() int64 {
			m, _ := statusKB(pid, "VmRSS")
			return m["VmRSS"]
		},
		peak: func() int64 {
			m, _ := statusKB(pid, "VmHWM")
			return m["VmHWM"]
		},
	}, nil
}

// startKamailio creates presence's SQLite tables in dir and starts kamailio with cfg on a
// free loopback UDP port (4 children, 256 MB of shared memory), ready once it answers an
// OPTIONS.
func startKamailio(ctx context.Context, bin, cfg, dir string) (*target, error) {
	sipPort, err := child.FreeUDPPort()
	if err != nil {
		return nil, err
	}
	db := filepath.Join(dir, "kamailio.sqlite")
	var schema []byte
	for _, f := range []string{"standard-create.sql", "presence-create.sql"} {
		b, err := os.ReadFile(filepath.Join("/usr/share/kamailio/db_sqlite", f))
		if err != nil {
			return nil, fmt.Errorf("kamailio: %w (apt-get install kamailio-sqlite-modules kamailio-presence-modules)", err)
		}
		schema = append(schema, b...)
	}
	sq := exec.CommandContext(ctx, "sqlite3", db)
	sq.Stdin = strings.NewReader(string(schema))
	if out, err := sq.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("kamailio: sqlite3 %s: %w\n%s", db, err, out)
	}
	logPath := filepath.Join(dir, "kamailio.log")
	args := []string{"-f", cfg, "-DD", "-E", "-l", "udp:127.0.0.1:" + strconv.Itoa(sipPort),
		"-Y", dir, "-m", "256", "-M", "16", "-A", `DBURL="sqlite://` + db + `"`}
	p, err := child.Start("kamailio", bin, args, dir, logPath)
	if err != nil {
		return nil, err
	}
	sip := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sipPort))
	if err := pingOptions(ctx, sip, p, 20*time.Second); err != nil {
		_, _, _ = p.Stop(5 * time.Second)
		return nil, fmt.Errorf("kamailio: %w; its log ends:\n%s", err, child.Tail(logPath, 10))
	}
	pid := p.PID()
	return &target{
		name: "kamailio", proc: p, sip: sip, logPath: logPath,
		memory: func() int64 { return treePSS(pid) },
		peak:   func() int64 { return 0 },
	}, nil
}

// pingOptions sends OPTIONS to sip until one is answered 200.
func pingOptions(ctx context.Context, sip netip.AddrPort, p *child.Proc, timeout time.Duration) error {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 65535)
	deadline := time.Now().Add(timeout)
	for i := 0; time.Now().Before(deadline); i++ {
		if p.Exited() {
			return fmt.Errorf("%s exited", p.Name)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := "OPTIONS sip:" + domain + " SIP/2.0\r\nVia: SIP/2.0/UDP " + c.LocalAddr().String() + ";branch=z9hG4bK-p" + strconv.Itoa(i) +
			"\r\nMax-Forwards: 70\r\nFrom: <sip:ping@" + domain + ">;tag=p\r\nTo: <sip:" + domain + ">\r\nCall-ID: ping-" + strconv.Itoa(i) +
			"\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
		_, _ = c.WriteToUDPAddrPort([]byte(msg), sip)
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && statusOf(buf[:n]) == 200 {
			return nil
		}
	}
	return fmt.Errorf("no 200 to OPTIONS within %s", timeout)
}
