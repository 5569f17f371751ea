package server_test

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/server"
	"github.com/simpled/simpled/internal/servertest"

	goredis "github.com/redis/go-redis/v9"
)

// redisCounts reads Redis's total_commands_processed and total_reads_processed (a read is a
// round trip: one request or one pipeline) through the server's store; ok is false for the
// memory store.
func redisCounts(b *testing.B, srv *server.Server) (redisStats, bool) {
	c, isRedis := srv.Store().(interface {
		Client() goredis.UniversalClient
	})
	if !isRedis {
		return redisStats{}, false
	}
	info, err := c.Client().Info(b.Context(), "stats", "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var st redisStats
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		f, _ := strconv.ParseFloat(v, 64)
		switch k {
		case "total_commands_processed":
			st.cmds = f
		case "total_reads_processed":
			st.reads = f
		case "used_cpu_sys", "used_cpu_user":
			st.cpu += f
		}
	}
	return st, true
}

// redisStats are redis-server's counters: commands, reads (round trips) and CPU seconds.
type redisStats struct{ cmds, reads, cpu float64 }

// reportRedis adds Redis commands, round trips and redis-server's CPU per op, counted since
// s0, to b's results: with concurrent requests sharing pipelines, round trips per op fall
// below the count of one request alone (bench/cost.sh); redis-cpu-µs/op is the server's own
// cost, apart from simpled's cpu-µs/op.
func reportRedis(b *testing.B, srv *server.Server, s0 redisStats, ops int) {
	s1, ok := redisCounts(b, srv)
	if !ok || ops == 0 {
		return
	}
	b.ReportMetric((s1.cmds-s0.cmds-1)/float64(ops), "redis-cmds/op")
	b.ReportMetric((s1.reads-s0.reads-1)/float64(ops), "redis-rt/op")
	b.ReportMetric((s1.cpu-s0.cpu)*1e6/float64(ops), "redis-cpu-µs/op")
}

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
	srv := servertest.Start(b, servertest.LoadGenerator(func(o *config.Options) {
		o.Listen = []string{"udp://127.0.0.1:0"}
		o.HTTP = ""
		o.Store = store
		o.Registrar.MaxNewAORsPerSource = 0 // one loopback source registers 500 AORs per client
	}))
	addr := srv.Listener("udp")
	var clients atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	s0, _ := redisCounts(b, srv)
	cpu := processCPU()
	b.ResetTimer()
	defer func() {
		b.StopTimer()
		b.ReportMetric(float64(processCPU()-cpu)/float64(b.N)/1e3, "cpu-µs/op")
		reportRedis(b, srv, s0, b.N)
	}()
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

// BenchmarkMessageUDP measures MESSAGEs relayed through a running server over loopback UDP to
// registered callees that answer 200 (lookup, fork of one branch, client transaction, relay of
// the answer), with several senders in parallel, on each backend. ns/op is per MESSAGE.
func BenchmarkMessageUDP(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchMessageUDP(b, "memory") })
	b.Run("redis", func(b *testing.B) {
		rs := redistest.Start(b)
		benchMessageUDP(b, rs.URL())
	})
}

func benchMessageUDP(b *testing.B, store string) {
	srv := servertest.Start(b, servertest.LoadGenerator(func(o *config.Options) {
		o.Listen = []string{"udp://127.0.0.1:0"}
		o.HTTP = ""
		o.Store = store
	}))
	addr := srv.Listener("udp")
	// Callees: one socket each, registered, answering every MESSAGE with 200.
	const callees = 16
	for i := range callees {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		w := servertest.PacketWire(b, c, mustUDPAddr(b, addr))
		user := "callee" + strconv.Itoa(i)
		w.Send(strings.Replace(servertest.Register(user, "bench-"+user, 1, "Contact: <sip:"+user+"@"+c.LocalAddr().String()+">"), "{local}", c.LocalAddr().String(), -1))
		w.Expect(`^SIP/2.0 200 `)
		_ = c.SetReadDeadline(time.Time{}) // expect left one
		go answerMessages(c)
	}
	var clients atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	s0, _ := redisCounts(b, srv)
	b.ResetTimer()
	defer func() { b.StopTimer(); reportRedis(b, srv, s0, b.N) }()
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
			to := "callee" + strconv.Itoa(i%callees)
			body := "benchmark message " + strconv.Itoa(i)
			msg := fmt.Sprintf("MESSAGE sip:%s@example.test SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%d-%d\r\n"+
				"Max-Forwards: 70\r\nFrom: <sip:sender@example.test>;tag=%d\r\nTo: <sip:%s@example.test>\r\n"+
				"Call-ID: m%d-%d\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s",
				to, local, id, i, i, to, id, i, len(body), body)
			if !transact(b, c, buf, msg, "200") {
				return
			}
		}
	})
}

func mustUDPAddr(b *testing.B, addr string) net.Addr {
	a, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	return a
}

// transact sends msg on c and reads its answers until the final one, which must have status
// want; it reports the failure on b and returns false otherwise.
func transact(b *testing.B, c net.Conn, buf []byte, msg, want string) bool {
	if _, err := c.Write([]byte(msg)); err != nil {
		b.Error(err)
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, err := c.Read(buf)
		if err != nil {
			b.Errorf("no answer: %v", err)
			return false
		}
		if bytes.HasPrefix(buf[:n], []byte("SIP/2.0 1")) {
			continue
		}
		if !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 "+want+" ")) {
			b.Errorf("answer %q", buf[:min(n, 40)])
			return false
		}
		return true
	}
}

// answerMessages answers every request read on c with a 200 built from its headers, until c
// is closed.
func answerMessages(c net.PacketConn) {
	answerRequests(c, "", "200 OK")
}

// answerRequests answers every request read on c whose first line begins with method (""
// for any) with status ("486 Busy Here"), built from its headers, until c is closed: the
// stateless far end of the benchmarks.
func answerRequests(c net.PacketConn, method, status string) {
	buf := make([]byte, 65535)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		msg := string(buf[:n])
		if strings.HasPrefix(msg, "SIP/2.0") || !strings.HasPrefix(msg, method) {
			continue
		}
		var b strings.Builder
		b.WriteString("SIP/2.0 " + status + "\r\n")
		head, _, _ := strings.Cut(msg, "\r\n\r\n")
		for _, line := range strings.Split(head, "\r\n")[1:] {
			name, _, _ := strings.Cut(line, ":")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "via", "from", "call-id", "cseq":
				b.WriteString(line + "\r\n")
			case "to":
				b.WriteString(line + ";tag=b\r\n")
			}
		}
		b.WriteString("Content-Length: 0\r\n\r\n")
		_, _ = c.WriteTo([]byte(b.String()), from)
	}
}

// BenchmarkNotifyFanout measures the NOTIFY fan-out of one presentity with 1,000 and 10,000
// watchers: each op is one PUBLISH (a modification) and the NOTIFYs it causes, each answered
// 200 by the watchers (UDP sockets of 100 subscriptions each). notifies/s is the fan-out rate
// and ms/publish (= ns/op) the time from the PUBLISH to the last NOTIFY answered.
func BenchmarkNotifyFanout(b *testing.B) {
	for _, watchers := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("memory/%d", watchers), func(b *testing.B) { benchNotifyFanout(b, "memory", watchers) })
		b.Run(fmt.Sprintf("redis/%d", watchers), func(b *testing.B) {
			rs := redistest.Start(b)
			benchNotifyFanout(b, rs.URL(), watchers)
		})
	}
}

func benchNotifyFanout(b *testing.B, store string, watchers int) {
	benchNotifyFanoutNodes(b, store, 1, watchers)
}

// publishFanout publishes boss's presence (a new publication without etag, else a
// modification) with a note that differs per step, and returns the new entity tag.
func publishFanout(b *testing.B, srv *server.Server, etag string, step int) string {
	c, err := net.Dial("udp", srv.Listener("udp"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	body := `<?xml version="1.0" encoding="UTF-8"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:boss@example.test">` +
		`<tuple id="t1"><status><basic>open</basic></status><note>step ` + strconv.Itoa(step) + `</note></tuple></presence>`
	ifMatch := ""
	if etag != "" {
		ifMatch = "SIP-If-Match: " + etag + "\r\n"
	}
	msg := fmt.Sprintf("PUBLISH sip:boss@example.test SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKpub%d\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:boss@example.test>;tag=p%d\r\nTo: <sip:boss@example.test>\r\n"+
		"Call-ID: fanpub-%d\r\nCSeq: 1 PUBLISH\r\nEvent: presence\r\nExpires: 3600\r\n%s"+
		"Content-Type: application/pidf+xml\r\nContent-Length: %d\r\n\r\n%s",
		c.LocalAddr(), step, step, step, ifMatch, len(body), body)
	// Retransmitted as a UA does (RFC 3261 Timer E): during a fan-out of thousands of
	// NOTIFYs the server's socket may drop a datagram.
	buf := make([]byte, 4096)
	var n int
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 4*time.Second) {
		if _, err := c.Write([]byte(msg)); err != nil {
			b.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		n, err = c.Read(buf)
		if err == nil || wait >= 4*time.Second {
			break
		}
	}
	if err != nil || !bytes.HasPrefix(buf[:n], []byte("SIP/2.0 200 ")) {
		b.Fatalf("PUBLISH answer %q: %v", buf[:min(n, 60)], err)
	}
	for _, line := range strings.Split(string(buf[:n]), "\r\n") {
		if v, ok := strings.CutPrefix(line, "SIP-ETag: "); ok {
			return v
		}
	}
	b.Fatal("PUBLISH 200 without SIP-ETag")
	return ""
}

// answerNotifies answers every NOTIFY read on c with 200 and counts them, a retransmission
// (same Call-ID and CSeq) once, until c is closed.
func answerNotifies(c net.PacketConn, count *atomic.Int64) {
	answerNotifiesBy(c, func(string) int64 { return 1 }, count)
}

// notifyRetransmissions counts the NOTIFYs answerNotifiesBy read again (same Call-ID and
// CSeq): each is a NOTIFY whose 200 did not reach its sender within Timer E.
var notifyRetransmissions atomic.Int64

// answerNotifiesBy answers every NOTIFY read on c with 200 and adds weigh(its body) to count,
// a retransmission (same Call-ID and CSeq) once, until c is closed.
func answerNotifiesBy(c net.PacketConn, weigh func(body string) int64, count *atomic.Int64) {
	buf := make([]byte, 65535)
	seen := map[string]bool{}
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		if !bytes.HasPrefix(buf[:n], []byte("NOTIFY ")) {
			continue
		}
		head, body, _ := strings.Cut(string(buf[:n]), "\r\n\r\n")
		var res strings.Builder
		res.WriteString("SIP/2.0 200 OK\r\n")
		key := ""
		for _, line := range strings.Split(head, "\r\n")[1:] {
			name, _, _ := strings.Cut(line, ":")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "call-id", "cseq":
				key += line
				res.WriteString(line + "\r\n")
			case "via", "from", "to":
				res.WriteString(line + "\r\n")
			}
		}
		res.WriteString("Content-Length: 0\r\n\r\n")
		_, _ = c.WriteTo([]byte(res.String()), from)
		if !seen[key] {
			seen[key] = true
			count.Add(weigh(body))
		} else {
			notifyRetransmissions.Add(1)
		}
	}
}

// BenchmarkNotifyFanoutNodes is BenchmarkNotifyFanout with the watchers spread over 1, 2 or 3
// nodes on one Redis and the PUBLISHes taking turns on the nodes: what owners and the event
// bus cost per change (redis-cmds/op is per PUBLISH, all its NOTIFYs included) against one
// node. All nodes share this machine's cores with Redis and the watchers.
func BenchmarkNotifyFanoutNodes(b *testing.B) {
	for _, nodes := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("redis/%dnodes/1000", nodes), func(b *testing.B) {
			benchNotifyFanoutNodes(b, redistest.Start(b).URL(), nodes, 1000)
		})
	}
}

func benchNotifyFanoutNodes(b *testing.B, store string, nodes, watchers int) {
	const perSocket = 100
	srvs := make([]*server.Server, nodes)
	for i := range srvs {
		srvs[i] = servertest.Start(b, servertest.LoadGenerator(func(o *config.Options) {
			o.Listen = []string{"udp://127.0.0.1:0"}
			o.HTTP = ""
			o.Store, o.NodeID = store, fmt.Sprintf("n%d", i)
			// Nodes of one deployment share the secret (one node alone would draw its own).
			o.Auth.NonceSecret = "one secret for the whole deployment"
			o.Presence.MinNotifyInterval = time.Millisecond
		}))
	}
	if nodes > 1 {
		time.Sleep(time.Second) // every node in every other's view, and settled
	}
	publishFanout(b, srvs[0], "", 0) // the presentity must exist
	var notified atomic.Int64
	for s := range watchers / perSocket {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		_ = c.(*net.UDPConn).SetReadBuffer(4 << 20)
		b.Cleanup(func() { c.Close() })
		go answerNotifies(c, &notified)
		local, to := c.LocalAddr().String(), mustUDPAddr(b, srvs[s%nodes].Listener("udp"))
		for i := range perSocket {
			id := strconv.Itoa(s*perSocket + i)
			msg := fmt.Sprintf("SUBSCRIBE sip:boss@example.test SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKfan%s\r\n"+
				"Max-Forwards: 70\r\nFrom: <sip:w%s@example.test>;tag=f%s\r\nTo: <sip:boss@example.test>\r\n"+
				"Call-ID: fan-%s\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:w%s@%s>\r\nEvent: presence\r\nExpires: 3600\r\n"+
				"Content-Length: 0\r\n\r\n", local, id, id, id, id, id, local)
			if _, err := c.WriteTo([]byte(msg), to); err != nil {
				b.Fatal(err)
			}
			if i%50 == 49 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		// One socket's first NOTIFYs answered before the next socket subscribes: SUBSCRIBEs
		// sent faster than a loaded machine takes them are dropped (they are not retransmitted).
		for deadline := time.Now().Add(10 * time.Second); notified.Load() < int64((s+1)*perSocket) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	waitNotified := func(want int64) {
		deadline := time.Now().Add(30 * time.Second)
		for notified.Load() < want {
			if time.Now().After(deadline) {
				b.Fatalf("%d NOTIFYs answered, want %d", notified.Load(), want)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	waitNotified(int64(watchers))
	etag := publishFanout(b, srvs[0], "", 1)
	waitNotified(int64(2 * watchers))
	s0, _ := redisCounts(b, srvs[0])
	re0 := notifyRetransmissions.Load()
	cpu := processCPU()
	b.ResetTimer()
	for i := range b.N {
		etag = publishFanout(b, srvs[i%nodes], etag, i+2)
		waitNotified(int64(watchers * (i + 3)))
	}
	b.StopTimer()
	// NOTIFYs beyond one per watcher and change (retransmissions not counted): 0 means each
	// change reached each watcher exactly once.
	b.ReportMetric(float64(notified.Load()-int64(watchers*(b.N+2)))/float64(b.N), "extra-notifies/op")
	// The process's CPU (servers and watchers; redis-server's is apart) per NOTIFY: on a
	// shared machine steadier than the rate, which follows the CPU the process is given.
	b.ReportMetric(float64(processCPU()-cpu)/float64(watchers*b.N)/1e3, "cpu-µs/notify")
	b.ReportMetric(float64(notifyRetransmissions.Load()-re0)/float64(b.N), "retransmitted/op")
	reportRedis(b, srvs[0], s0, b.N)
	b.ReportMetric(float64(watchers*b.N)/b.Elapsed().Seconds(), "notifies/s")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/publish")
}
