package admin_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"
)

func TestHealthReadyMetrics(t *testing.T) {
	srv := servertest.Start(t, nil)
	base := "http://" + srv.HTTPAddr()
	servertest.HTTPGet(t, base+"/healthz", 200)
	servertest.HTTPGet(t, base+"/readyz", 200)
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	w.Send(servertest.Register("dave", "m1", 1, "Contact: <sip:dave@127.0.0.1:5099>"))
	w.Expect(`^SIP/2.0 200 `)
	w.Send(valid405)
	w.Expect(`^SIP/2.0 405 `)
	// A response is counted when its handler returns, just after it was sent: poll.
	var missing []string
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		metrics := servertest.HTTPGet(t, base+"/metrics", 200)
		missing = missing[:0]
		for _, want := range []string{
			`simpled_sip_requests_total{method="REGISTER"} 1`,
			`simpled_sip_responses_total{code="200",method="REGISTER"} 1`,
			`simpled_sip_responses_total{code="405",method="FOO"} 1`,
			`simpled_binding_events_total{kind="binding.added"} 1`,
			`simpled_store_duration_seconds_count{op="update_bindings"} 1`,
		} {
			if !strings.Contains(metrics, want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, m := range missing {
		t.Errorf("metrics lack %s", m)
	}
	servertest.HTTPGet(t, base+"/api/v1/registrations/not-an-aor", 400)
}

const valid405 = "FOO sip:example.test SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bKfoo1\nMax-Forwards: 70\nFrom: <sip:a@example.test>;tag=1\nTo: <sip:bob@example.test>\nCall-ID: foo1\nCSeq: 1 FOO\nContent-Length: 0\n\n"

// The profiler is served on the HTTP listener only when asked for (-pprof), which needs the
// admin token, and only to requests that carry it.
func TestPprofBehindFlag(t *testing.T) {
	off := servertest.Start(t, nil)
	servertest.HTTPGet(t, "http://"+off.HTTPAddr()+"/debug/pprof/", 404)
	on := servertest.Start(t, func(o *config.Options) { o.Pprof = true; o.Admin.TokenFile = servertest.TokenFile(t) })
	servertest.HTTPGet(t, "http://"+on.HTTPAddr()+"/debug/pprof/", 401)
	get := func(path string) string {
		req, _ := http.NewRequest("GET", "http://"+on.HTTPAddr()+path, nil)
		req.Header.Set("Authorization", "Bearer "+servertest.AdminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d\n%s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	if body := get("/debug/pprof/"); !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/ index without profiles:\n%.300s", body)
	}
	get("/debug/pprof/heap?debug=1")
}
