package presence

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/simpled/simpled/storage"
)

// BenchmarkCompose measures composing a presentity's document from three devices'
// publications (RFC 3863 composition): the store read, three PIDF parses, the dedupe of
// restated publications and the composed document's serialisation. It is what the first
// NOTIFY after a change costs; the watchers after it share the cached document.
func BenchmarkCompose(b *testing.B) {
	p := newTestPresence(b, PolicyAllow)
	ctx := context.Background()
	const aor = "alice@example.test"
	now := time.Now()
	for i, basic := range []string{"open", "closed", "open"} {
		body := []byte(`<?xml version="1.0" encoding="UTF-8"?>` +
			`<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" ` +
			`xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" entity="sip:alice@example.test">` +
			`<tuple id="dev` + strconv.Itoa(i) + `"><status><basic>` + basic + `</basic></status>` +
			`<contact priority="0.8">sip:alice@192.0.2.` + strconv.Itoa(i+1) + `</contact><note>device ` + strconv.Itoa(i) + `</note></tuple>` +
			`<dm:person id="p` + strconv.Itoa(i) + `"><rpid:activities><rpid:on-the-phone/></rpid:activities></dm:person></presence>`)
		if _, err := p.opts.Store.Publish(ctx, aor, storage.PublishOp{Now: now, NewETag: "e" + strconv.Itoa(i), Body: body,
			ContentType: "application/pidf+xml", ExpiresAt: now.Add(time.Hour), Source: "udp:192.0.2." + strconv.Itoa(i+1) + ":5060"}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		doc, err := p.compose(ctx, aor)
		if err != nil || len(doc) == 0 {
			b.Fatalf("compose: %d bytes, %v", len(doc), err)
		}
	}
}
