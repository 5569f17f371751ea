package registrar

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage/memory"
	redisstore "github.com/simpled/simpled/storage/redis"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
)

// BenchmarkRegister measures the registrar stage alone (contact parsing, one store update,
// the 200) for a REGISTER refresh of one of 1,000 AORs, on each backend.
func BenchmarkRegister(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchRegister(b, memory.New()) })
	b.Run("redis", func(b *testing.B) {
		rs := redistest.Start(b)
		st, err := redisstore.New(context.Background(), rs.URL(), redisstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		benchRegister(b, st)
	})
}

func benchRegister(b *testing.B, store Store) {
	r, err := Setup(DefaultConfig(), Deps{Domains: []string{"example.test"}, Store: store})
	if err != nil {
		b.Fatal(err)
	}
	h := r.Plugin()(nil)
	parser := sipx.NewParser(1 << 16)
	reqs := make([]*sip.Request, 1000)
	for i := range reqs {
		raw := fmt.Sprintf("REGISTER sip:example.test SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK%d\r\n"+
			"From: <sip:u%06d@example.test>;tag=1\r\nTo: <sip:u%06d@example.test>\r\n"+
			"Call-ID: bench%d\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n"+
			"Contact: <sip:u%06d@127.0.0.1:5070>\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n", i, i, i, i, i)
		msg, err := parser.ParseSIP([]byte(raw))
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = msg.(*sip.Request)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		req := reqs[i%len(reqs)]
		req.CSeq().SeqNo = uint32(i/len(reqs) + 1) // a refresh: same Call-ID, higher CSeq
		tx := siptest.NewServerTxRecorder(req)
		if status, err := h.ServeSIP(ctx, tx, req); status != 200 || err != nil {
			b.Fatalf("status %d err %v", status, err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "registers/s")
}
