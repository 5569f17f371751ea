package server_test

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"
)

// BenchmarkInviteUDP measures INVITE transactions proxied through a running server over
// loopback UDP to registered callees that answer 486 Busy Here at once (100 Trying, lookup,
// fork of one branch with Record-Route, INVITE client transaction, the ACK of the 486, relay of
// the answer), with several callers in parallel, on the memory store: each call begins and ends,
// so the tracked modes store two dialogs per call and move them to terminated. ns/op is per INVITE. Sub-benchmarks: untracked
// (dialog.track_calls off: the proxy has no call observer), tracked (the BLF call tracker
// stores each call's dialogs, nobody watches), watched (each callee's dialog state has a
// watcher, which gets a NOTIFY per change).
func BenchmarkInviteUDP(b *testing.B) {
	for _, mode := range []string{"untracked", "tracked", "watched"} {
		b.Run(mode, func(b *testing.B) { benchInviteUDP(b, mode) })
	}
}

func benchInviteUDP(b *testing.B, mode string) {
	srv := servertest.Start(b, servertest.LoadGenerator(func(o *config.Options) {
		o.Listen = []string{"udp://127.0.0.1:0"}
		o.HTTP = ""
		o.Dialog.TrackCalls = mode != "untracked"
	}))
	addr := srv.Listener("udp")
	const callees = 16
	var notified atomic.Int64
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
		_ = c.SetReadDeadline(time.Time{})
		go answerBusy(c)
		if mode == "watched" {
			wc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { wc.Close() })
			local := wc.LocalAddr().String()
			msg := fmt.Sprintf("SUBSCRIBE sip:%s@example.test SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKblf%d\r\n"+
				"Max-Forwards: 70\r\nFrom: <sip:w%d@example.test>;tag=f%d\r\nTo: <sip:%s@example.test>\r\n"+
				"Call-ID: blf-%d\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:w@%s>\r\nEvent: dialog\r\nExpires: 3600\r\n"+
				"Content-Length: 0\r\n\r\n", user, local, i, i, i, user, i, local)
			if _, err := wc.WriteTo([]byte(msg), mustUDPAddr(b, addr)); err != nil {
				b.Fatal(err)
			}
			go answerNotifies(wc, &notified)
		}
	}
	if mode == "watched" {
		servertest.WaitFor(b, "first dialog NOTIFYs", func() bool { return notified.Load() >= callees })
	}
	var clients atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	cpu := processCPU()
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
			to := "callee" + strconv.Itoa(i%callees)
			msg := fmt.Sprintf("INVITE sip:%s@example.test SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKi%d-%d\r\n"+
				"Max-Forwards: 70\r\nFrom: <sip:caller%d@example.test>;tag=%d\r\nTo: <sip:%s@example.test>\r\n"+
				"Call-ID: i%d-%d\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@%s>\r\nContent-Length: 0\r\n\r\n",
				to, local, id, i, id, i, to, id, i, local)
			if !transact(b, c, buf, msg, "486") {
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N)/1e3, "cpu-µs/op")
	if mode == "watched" {
		b.ReportMetric(float64(notified.Load())/float64(b.N), "notifies/op")
	}
}

// processCPU is the CPU time (user and system) this process has used so far: servers and
// clients alike, but the clients do the same work in every mode, so differences between
// modes are the server's. Less noisy than ns/op on a shared machine, which measures waiting.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// answerBusy answers every INVITE read on c with 486 (ACKs need no answer), until c is closed.
func answerBusy(c net.PacketConn) { answerRequests(c, "INVITE ", "486 Busy Here") }

// BenchmarkBLFFanout measures the busy lamp field's fan-out: 1,000 watchers of one user's
// dialog state (UDP sockets of 100 subscriptions each); each op is one call to that user,
// which declines it (486), and the NOTIFYs that report its end to every watcher, each answered
// 200. notifies/s is the fan-out rate and ms/call (= ns/op) the time from the INVITE to the
// last watcher told the call ended. In the style of BenchmarkNotifyFanout.
func BenchmarkBLFFanout(b *testing.B) {
	b.Run("memory/1000", func(b *testing.B) { benchBLFFanout(b, 1000) })
}

func benchBLFFanout(b *testing.B, watchers int) {
	const perSocket = 100
	srv := servertest.Start(b, servertest.LoadGenerator(func(o *config.Options) {
		o.Listen = []string{"udp://127.0.0.1:0"}
		o.HTTP = ""
		o.Presence.MinNotifyInterval = time.Millisecond
	}))
	to := mustUDPAddr(b, srv.Listener("udp"))
	boss, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { boss.Close() })
	w := servertest.PacketWire(b, boss, to)
	w.Send(strings.Replace(servertest.Register("boss", "bench-boss", 1, "Contact: <sip:boss@"+boss.LocalAddr().String()+">"), "{local}", boss.LocalAddr().String(), -1))
	w.Expect(`^SIP/2.0 200 `)
	_ = boss.SetReadDeadline(time.Time{})
	go answerBusy(boss)

	var ended atomic.Int64 // NOTIFYs telling a call's end, one per watcher and call
	for s := range watchers / perSocket {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		_ = c.(*net.UDPConn).SetReadBuffer(4 << 20)
		b.Cleanup(func() { c.Close() })
		go answerDialogNotifies(c, &ended)
		local := c.LocalAddr().String()
		for i := range perSocket {
			id := strconv.Itoa(s*perSocket + i)
			msg := fmt.Sprintf("SUBSCRIBE sip:boss@example.test SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKblf%s\r\n"+
				"Max-Forwards: 70\r\nFrom: <sip:w%s@example.test>;tag=f%s\r\nTo: <sip:boss@example.test>\r\n"+
				"Call-ID: blffan-%s\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:w%s@%s>\r\nEvent: dialog\r\nExpires: 3600\r\n"+
				"Content-Length: 0\r\n\r\n", local, id, id, id, id, id, local)
			if _, err := c.WriteTo([]byte(msg), to); err != nil {
				b.Fatal(err)
			}
			if i%50 == 49 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	time.Sleep(500 * time.Millisecond) // the first NOTIFYs (idle) answered
	caller, err := net.Dial("udp", srv.Listener("udp"))
	if err != nil {
		b.Fatal(err)
	}
	defer caller.Close()
	call := func(i int) {
		local := caller.LocalAddr().String()
		msg := fmt.Sprintf("INVITE sip:boss@example.test SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bKfan%d\r\n"+
			"Max-Forwards: 70\r\nFrom: <sip:caller@example.test>;tag=c%d\r\nTo: <sip:boss@example.test>\r\n"+
			"Call-ID: fan-call-%d\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@%s>\r\nContent-Length: 0\r\n\r\n", local, i, i, i, local)
		if _, err := caller.Write([]byte(msg)); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for ended.Load() < int64(watchers*(i+1)) {
			if time.Now().After(deadline) {
				b.Fatalf("%d watchers told of the call's end, want %d", ended.Load()-int64(watchers*i), watchers)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}
	call(0)
	b.ResetTimer()
	for i := range b.N {
		call(i + 1)
	}
	b.StopTimer()
	b.ReportMetric(float64(watchers*b.N)/b.Elapsed().Seconds(), "notifies/s")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/call")
}

// answerDialogNotifies answers every NOTIFY read on c with 200 and counts the declined calls'
// ends they tell of (a retransmission once), until c is closed.
func answerDialogNotifies(c net.PacketConn, ended *atomic.Int64) {
	answerNotifiesBy(c, func(body string) int64 { return int64(strings.Count(body, `event="rejected"`)) }, ended)
}
