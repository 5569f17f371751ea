package servertest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// RequireToolsEnv turns a missing client binary into a test failure.
const RequireToolsEnv = "SIMPLED_REQUIRE_TOOLS"

// ToolsRequired reports whether RequireToolsEnv is set (to anything but "" or "0").
func ToolsRequired() bool {
	v := os.Getenv(RequireToolsEnv)
	return v != "" && v != "0"
}

// Skip skips the test with reason, or fails it when the tools are required.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if ToolsRequired() {
		t.Fatalf("%s (%s is set)", reason, RequireToolsEnv)
	}
	t.Skip(reason)
}

// Tool returns the path of a client binary, or skips (see Skip).
func Tool(t testing.TB, name, debPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skip(t, fmt.Sprintf("%s not found on PATH (Debian package %s)", name, debPackage))
	}
	return p
}

// BenchDir is the repository's bench folder, whose sipp/ holds the load scenarios the
// benchmarks run (absolute: sipp runs in a temporary directory).
func BenchDir(t testing.TB) string {
	t.Helper()
	abs := filepath.Join(RepoDir(t), "bench")
	if _, err := os.Stat(filepath.Join(abs, "sipp", "register.xml")); err != nil {
		t.Fatalf("bench scenarios: %v", err)
	}
	return abs
}

// FreePorts returns base such that base..base+n-1 are free on 127.0.0.1 for UDP (and TCP when
// tcp is set). The ports are drawn below the usual ephemeral range and probed by binding; a
// later bind by the client can still race, which the launchers retry.
func FreePorts(t testing.TB, n int, tcp bool) int {
	t.Helper()
	return FreePortsAt(t, "127.0.0.1", n, tcp)
}

// FreePortsAt is FreePorts on another loopback address (127.0.0.5: another host, as far as
// simpled can tell).
func FreePortsAt(t testing.TB, ip string, n int, tcp bool) int {
	t.Helper()
	for attempt := 0; attempt < 200; attempt++ {
		base := 20000 + mrand.IntN(12000-n)
		if portsFree(ip, base, n, tcp) {
			return base
		}
	}
	t.Fatalf("no %d consecutive free loopback ports found", n)
	return 0
}

func portsFree(ip string, base, n int, tcp bool) bool {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for p := base; p < base+n; p++ {
		addr := net.JoinHostPort(ip, strconv.Itoa(p))
		u, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		closers = append(closers, u)
		if tcp {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return false
			}
			closers = append(closers, l)
		}
	}
	return true
}

// SyncBuffer collects a child's output while the test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// SelfSignedCert writes a self-signed ECDSA P-256 certificate for 127.0.0.1 (IP SAN) and
// example.test, and its key, as PEM files in a temporary directory and returns their paths.
func SelfSignedCert(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "127.0.0.1", Organization: []string{"simpled e2e test"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{Domain},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // its own trust anchor, should a client be given it as CA
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
