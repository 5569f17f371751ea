package registrar

import (
	"context"
	"strings"
	"testing"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage/memory"

	"github.com/emiago/sipgo/sip"
	"github.com/emiago/sipgo/siptest"
)

// FuzzRegister feeds REGISTERs with hostile Contact, Expires and Path values through the
// stage: it must answer every one with a final status, never panic, and never store a binding
// whose contact would inject header lines.
func FuzzRegister(f *testing.F) {
	f.Add(`<sip:alice-0x5608@127.0.0.1:25100>;expires=600;+sip.instance="<urn:uuid:3d0cd413>"`, "", "")
	f.Add(`"Bob" <sip:bob@127.0.0.1:25112;transport=udp>;+sip.instance="<urn:uuid:1>";reg-id=1`, "600", "<sip:edge;lr>")
	f.Add("*", "0", "")
	f.Add(`<sip:a@[::1]:5070>;q=0.5`, "99999999999999999999", `<sip:a;lr>, "x,y" <sip:b;lr>`)
	f.Fuzz(func(t *testing.T, contact, expires, path string) {
		for _, s := range []string{contact, expires, path} {
			if strings.ContainsAny(s, "\r\n") {
				return // a header value cannot hold a line break on the wire
			}
		}
		raw := "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKf\r\n" +
			"From: <sip:alice@example.test>;tag=1\r\nTo: <sip:alice@example.test>\r\nCall-ID: fz\r\n" +
			"CSeq: 1 REGISTER\r\nMax-Forwards: 70\r\nContact: " + contact + "\r\n"
		if expires != "" {
			raw += "Expires: " + expires + "\r\n"
		}
		if path != "" {
			raw += "Path: " + path + "\r\nSupported: path\r\n"
		}
		raw += "Content-Length: 0\r\n\r\n"
		msg, err := sipx.NewParser(1 << 16).ParseSIP([]byte(raw))
		if err != nil {
			return // sipgo refuses it before any stage runs
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.Via() == nil || req.CSeq() == nil || req.To() == nil || req.CallID() == nil {
			return
		}
		store := memory.New()
		r, err := Setup(DefaultConfig(), Deps{Domains: []string{"example.test"}, Store: store})
		if err != nil {
			t.Fatal(err)
		}
		tx := siptest.NewServerTxRecorder(req)
		status, _ := r.Plugin()(nil).ServeSIP(context.Background(), tx, req)
		switch status {
		case 200, 400, 403, 420, 423, 500:
		default:
			t.Fatalf("status %d for Contact %q Expires %q Path %q", status, contact, expires, path)
		}
		bs, _ := store.Bindings(context.Background(), "alice@example.test", r.opts.Now())
		for _, b := range bs {
			if !sipx.Sanitize(b.Contact) || !sipx.Sanitize(b.URI) {
				t.Fatalf("stored unsafe contact %q", b.Contact)
			}
		}
	})
}

// FuzzStoredContact checks the text a binding stores of a Contact against sipgo's own
// rendering of it: the header's value without expires and q, and its URI, byte for byte.
func FuzzStoredContact(f *testing.F) {
	f.Add(`<sip:alice@127.0.0.1:25100>;expires=600;+sip.instance="<urn:uuid:3d0cd413>"`)
	f.Add(`"Bob" <sip:bob@127.0.0.1:25112;transport=udp>;q=0.5;+sip.instance="<urn:uuid:1>";reg-id=1;expires=0`)
	f.Add(`<sips:[2001:db8::1]:5061;ob?X=y>;q=1;expires=60;q=0.1;lr`)
	f.Add(`Carol <sip:CAROL@Example.COM;maddr=x;transport=TCP>;methods="INVITE,MESSAGE"`)
	f.Add(`sip:dave@192.0.2.7:7060;expires=30`)
	f.Fuzz(func(t *testing.T, contact string) {
		if strings.ContainsAny(contact, "\r\n") {
			return
		}
		raw := "REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKf\r\n" +
			"Contact: " + contact + "\r\nContent-Length: 0\r\n\r\n"
		msg, err := sipx.NewParser(1 << 16).ParseSIP([]byte(raw))
		req, ok := msg.(*sip.Request)
		if err != nil || !ok {
			return
		}
		for _, h := range sipx.Headers(req, "Contact") {
			c, ok := h.(*sip.ContactHeader)
			if !ok || c.Address.Wildcard {
				continue
			}
			stored := c.Clone()
			stored.Params.Remove("expires")
			stored.Params.Remove("q")
			got, uri := storedContact(c)
			if want := stored.Value(); got != want {
				t.Errorf("stored contact %q, sipgo prints %q", got, want)
			}
			if want := c.Address.String(); uri != want {
				t.Errorf("stored URI %q, sipgo prints %q", uri, want)
			}
		}
	})
}
