package server

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/redistest"
)

// BenchmarkRegisterUDP measures whole REGISTER transactions through a running server over
// loopback UDP (socket, guard, sipgo parse and transaction, chain, store, answer), with
// several clients in parallel, on each backend. ns/op is per REGISTER.
func BenchmarkRegisterUDP(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchRegisterUDP(b, "memory") })
	b.Run("redis", func(b *testing.B) {
		rs := redistest.Start(b)
		benchRegisterUDP(b, rs.URL())
	})
}

func benchRegisterUDP(b *testing.B, store string) {
	srv := startServer(b, func(o *config.Options) {
		o.Listen = []string{"udp://127.0.0.1:0"}
		o.HTTP = ""
		o.Store = store
	})
	addr := srv.Listener("udp")
	var clients atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		id := clients.Add(1)
		c, err := net.Dial("udp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		local := c.LocalAddr().String()
		for i := 1; pb.Next(); i++ {
			user := "u" + strconv.FormatInt(id, 10) + "x" + strconv.Itoa(i%500)
			msg := fmt.Sprintf("REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%d-%d\r\n"+
				"Max-Forwards: 70\r\nFrom: <sip:%s@example.test>;tag=%d\r\nTo: <sip:%s@example.test>\r\n"+
				"Call-ID: %s-%d\r\nCSeq: %d REGISTER\r\nContact: <sip:%s@%s>\r\nExpires: 3600\r\n"+
				"User-Agent: bench\r\nContent-Length: 0\r\n\r\n", local, id, i, user, i, user, user, id, i, user, local)
			if _, err := c.Write([]byte(msg)); err != nil {
				b.Error(err)
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := c.Read(buf)
			if err != nil || !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200 ")) {
				b.Errorf("answer %q: %v", buf[:min(n, 40)], err)
				return
			}
		}
	})
}
