//go:build linux

package server_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"
)

// BenchmarkRegisterStream measures whole REGISTER transactions over loopback TCP and TLS (one
// connection per parallel client, the memory store), to set beside BenchmarkRegisterUDP: the
// cost of the stream listener, sipgo's stream parser and, for TLS, the record layer. ns/op is
// per REGISTER.
func BenchmarkRegisterStream(b *testing.B) {
	for _, scheme := range []string{"tcp", "tls"} {
		b.Run(scheme, func(b *testing.B) { benchRegisterStream(b, scheme) })
	}
}

func benchRegisterStream(b *testing.B, scheme string) {
	cert, key := servertest.SelfSignedCert(b)
	srv := servertest.Start(b, servertest.LoadGenerator(func(o *config.Options) {
		o.Listen = []string{scheme + "://127.0.0.1:0"}
		o.HTTP = ""
		o.TLSCert, o.TLSKey = cert, key
	}))
	addr := srv.Listener(scheme)
	var clients atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := clients.Add(1)
		var c net.Conn
		var err error
		if scheme == "tls" {
			c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the test's own certificate
		} else {
			c, err = net.Dial("tcp", addr)
		}
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		rd := bufio.NewReader(c)
		local := c.LocalAddr().String()
		via := strings.ToUpper(scheme)
		for i := 1; pb.Next(); i++ {
			user := "u" + strconv.FormatInt(id, 10) + "x" + strconv.Itoa(i%500)
			msg := fmt.Sprintf("REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/%s %s;branch=z9hG4bK%d-%d\r\n"+
				"Max-Forwards: 70\r\nFrom: <sip:%s@example.test>;tag=%d\r\nTo: <sip:%s@example.test>\r\n"+
				"Call-ID: %s-%d\r\nCSeq: %d REGISTER\r\nContact: <sip:%s@%s;transport=%s>\r\nExpires: 3600\r\n"+
				"User-Agent: bench\r\nContent-Length: 0\r\n\r\n", via, local, id, i, user, i, user, user, id, i, user, local, scheme)
			if _, err := c.Write([]byte(msg)); err != nil {
				b.Error(err)
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			status, err := rd.ReadString('\n')
			if err != nil || !strings.HasPrefix(status, "SIP/2.0 200 ") {
				b.Errorf("answer %q: %v", status, err)
				return
			}
			for { // the rest of the response: headers, no body (Content-Length: 0)
				line, err := rd.ReadString('\n')
				if err != nil {
					b.Error(err)
					return
				}
				if line == "\r\n" {
					break
				}
			}
		}
	})
}
