package cluster_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/cluster"
	"github.com/simpled/simpled/storage"
)

// BenchmarkForward measures what a binding event costs on the bus between nodes: Redis
// commands, bytes into and out of Redis, per event published on one node and received by
// all the others. "burst" publishes without waiting (batches fill), "one-by-one" waits for
// each event to arrive before the next (a batch per event: the idle cost).
func BenchmarkForward(b *testing.B) {
	for _, nodes := range []int{2, 3} {
		for _, mode := range []string{"burst", "one-by-one"} {
			b.Run(fmt.Sprintf("nodes=%d/%s", nodes, mode), func(b *testing.B) {
				benchForward(b, nodes, mode == "burst")
			})
		}
	}
}

func benchForward(b *testing.B, nodes int, burst bool) {
	rs := redistest.Start(b)
	var all []*node
	for i := range nodes {
		all = append(all, startNode(b, rs.URL(), "n"+strconv.Itoa(i), 10*time.Second))
	}
	for _, n := range all {
		_ = n.Join(context.Background()) // every node sees every other now
	}
	var got atomic.Int64
	for _, n := range all[1:] {
		ch, stop := n.Subscribe(benchBuffer)
		b.Cleanup(stop)
		go func() {
			for range ch {
				got.Add(1)
			}
		}()
	}
	now := time.Now()
	ev := storage.Event{Kind: storage.BindingRefreshed, AOR: "sip:alice@example.test", At: now, Mailbox: storage.MailboxEmpty,
		Binding: storage.Binding{Key: "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>", Contact: "<sip:alice@192.0.2.10:5060;transport=tcp>;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\"",
			URI: "sip:alice@192.0.2.10:5060;transport=tcp", ExpiresAt: now.Add(time.Hour), Q: -1, CallID: "843817637684230@998sdasdh09",
			CSeq: 1826, InstanceID: "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>", RegID: 1, Received: "192.0.2.10:53422",
			Transport: "tcp", Flow: "f1.AbCdEfGhIjKlMnOpQrStUv", Node: "n0", UserAgent: "baresip 3.10", UpdatedAt: now}}
	want := int64(nodes - 1)
	before := redisStats(b, all[0])
	b.ResetTimer()
	for i := range b.N {
		all[0].Publish(ev)
		if !burst {
			waitCount(b, &got, want*int64(i+1))
		} else if i%cluster.QueueSize == cluster.QueueSize-1 {
			waitCount(b, &got, want*int64(i+1)) // never outrun the queue
		}
	}
	waitCount(b, &got, want*int64(b.N))
	b.StopTimer()
	after := redisStats(b, all[0])
	for _, k := range []string{"total_commands_processed", "total_net_input_bytes", "total_net_output_bytes"} {
		b.ReportMetric(float64(after[k]-before[k])/float64(b.N), strings.TrimPrefix(k, "total_")+"/event")
	}
}

const benchBuffer = 1 << 16

// waitCount waits until n events have arrived, for up to 10 s.
func waitCount(b *testing.B, got *atomic.Int64, n int64) {
	deadline := time.Now().Add(10 * time.Second)
	for got.Load() < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d events arrived", got.Load(), n)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// redisStats reads Redis's INFO stats counters.
func redisStats(b *testing.B, n *node) map[string]int64 {
	info, err := n.store.Client().Info(context.Background(), "stats").Result()
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok {
			out[k], _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return out
}
