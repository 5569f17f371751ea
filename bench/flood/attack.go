package main

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/simpled/simpled/bench/internal/rawsip"
)

// counterWidth is the width of the decimal counter written into a template's placeholders.
const counterWidth = 10

var placeholder = strings.Repeat("#", counterWidth)

// template is one attack request, built once: its counter placeholders are overwritten in
// place for every packet (Via branch, Call-ID, tags, random AOR), so a packet costs no
// allocation.
type template struct {
	buf  []byte
	offs []int
}

// newTemplate builds a template from s: every "##########" is a counter slot.
func newTemplate(s string) *template {
	t := &template{buf: []byte(s)}
	for i := 0; ; {
		j := strings.Index(s[i:], placeholder)
		if j < 0 {
			break
		}
		t.offs = append(t.offs, i+j)
		i += j + counterWidth
	}
	return t
}

// stamp writes n into every slot and returns the packet.
func (t *template) stamp(n uint64) []byte {
	for _, off := range t.offs {
		v := n
		for k := counterWidth - 1; k >= 0; k-- {
			t.buf[off+k] = byte('0' + v%10)
			v /= 10
		}
	}
	return t.buf
}

// attackTemplates returns the attack requests from src to the server at dst; nonce, when
// not empty, is answered (with a wrong password) by the wrong-password REGISTER.
func attackTemplates(src, dst, nonce string) []*template {
	via := "Via: SIP/2.0/UDP " + src + ";branch=z9hG4bK-fl" + placeholder + ";rport\r\nMax-Forwards: 70\r\n"
	auth := ""
	if nonce != "" {
		auth = `Authorization: Digest username="alice",realm="` + domain + `",nonce="` + nonce +
			`",uri="sip:` + domain + `",algorithm=MD5,qop=auth,nc=00000001,cnonce="` + placeholder +
			`",response="0123456789abcdef0123456789abcdef"` + "\r\n"
	}
	sdp := "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
	body := "buy cheap stuff now"
	return []*template{
		newTemplate("REGISTER sip:" + domain + " SIP/2.0\r\n" + via +
			"From: <sip:alice@" + domain + ">;tag=" + placeholder + "\r\nTo: <sip:alice@" + domain + ">\r\n" +
			"Call-ID: fw-" + placeholder + "\r\nCSeq: 2 REGISTER\r\nContact: <sip:alice@" + src + ">\r\n" +
			auth + "Expires: 3600\r\nContent-Length: 0\r\n\r\n"),
		newTemplate("REGISTER sip:" + domain + " SIP/2.0\r\n" + via +
			"From: <sip:r" + placeholder + "@" + domain + ">;tag=" + placeholder + "\r\nTo: <sip:r" + placeholder + "@" + domain + ">\r\n" +
			"Call-ID: fr-" + placeholder + "\r\nCSeq: 1 REGISTER\r\nContact: <sip:r" + placeholder + "@" + src + ">\r\n" +
			"Expires: 3600\r\nContent-Length: 0\r\n\r\n"),
		newTemplate("OPTIONS sip:" + domain + " SIP/2.0\r\n" + via +
			"From: <sip:scan@evil.example>;tag=" + placeholder + "\r\nTo: <sip:" + domain + ">\r\n" +
			"Call-ID: fo-" + placeholder + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"),
		newTemplate("INVITE sip:nobody" + placeholder + "@" + domain + " SIP/2.0\r\n" + via +
			"From: <sip:caller@evil.example>;tag=" + placeholder + "\r\nTo: <sip:nobody" + placeholder + "@" + domain + ">\r\n" +
			"Call-ID: fi-" + placeholder + "\r\nCSeq: 1 INVITE\r\nContact: <sip:caller@" + src + ">\r\n" +
			"Content-Type: application/sdp\r\nContent-Length: " + itoa(len(sdp)) + "\r\n\r\n" + sdp),
		newTemplate("SUBSCRIBE sip:alice@" + domain + " SIP/2.0\r\n" + via +
			"From: <sip:w" + placeholder + "@evil.example>;tag=" + placeholder + "\r\nTo: <sip:alice@" + domain + ">\r\n" +
			"Call-ID: fs-" + placeholder + "\r\nCSeq: 1 SUBSCRIBE\r\nContact: <sip:w@" + src + ">\r\n" +
			"Event: presence\r\nAccept: application/pidf+xml\r\nExpires: 3600\r\nContent-Length: 0\r\n\r\n"),
		newTemplate("MESSAGE sip:carol@" + domain + " SIP/2.0\r\n" + via +
			"From: <sip:spam" + placeholder + "@evil.example>;tag=" + placeholder + "\r\nTo: <sip:carol@" + domain + ">\r\n" +
			"Call-ID: fm-" + placeholder + "\r\nCSeq: 1 MESSAGE\r\n" +
			"Content-Type: text/plain\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body),
	}
}

// attackStats are what the attackers sent and got back.
type attackStats struct {
	sent, writeErrs, requestsIn atomic.Int64
	codes                       [700]atomic.Int64
	nonce                       atomic.Pointer[string] // the latest REGISTER challenge's nonce
}

// flood sends the attack from sockets bound to the addresses in srcs (one per goroutine,
// round robin) to dst at rate packets per second in total until stop closes or until
// deadline, and reads and counts every answer (without answering the NOTIFYs). It returns
// when every goroutine has ended.
func flood(srcs []string, goroutines int, dst netip.AddrPort, rate int, deadline time.Time, stop <-chan struct{}, st *attackStats) error {
	var conns []*net.UDPConn
	for i := range goroutines {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(srcs[i%len(srcs)]), 0)))
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return err
		}
		_ = c.SetReadBuffer(4 << 20)
		_ = c.SetWriteBuffer(4 << 20)
		conns = append(conns, c)
	}
	var readers, senders sync.WaitGroup
	for _, c := range conns {
		readers.Add(1)
		go func() {
			defer readers.Done()
			buf := make([]byte, 65535)
			for {
				n, err := c.Read(buf)
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				code := statusOf(buf[:n])
				if code == 0 {
					st.requestsIn.Add(1)
					continue
				}
				st.codes[code].Add(1)
				if code == 401 && st.nonce.Load() == nil || code == 401 && st.codes[401].Load()%64 == 0 {
					if ch := parseChallenge(string(rawsip.HeaderValue(rawsip.Head(buf[:n]), "WWW-Authenticate", ""))); ch != nil {
						st.nonce.Store(&ch.nonce)
					}
				}
			}
		}()
	}
	per := float64(rate) / float64(goroutines)
	for g, c := range conns {
		senders.Add(1)
		go func() {
			defer senders.Done()
			src := c.LocalAddr().String()
			var usedNonce *string
			ts := attackTemplates(src, dst.String(), "")
			start := time.Now()
			var sent uint64
			for k := 0; ; k++ {
				if k%64 == 0 {
					select {
					case <-stop:
						return
					default:
					}
					if time.Now().After(deadline) {
						return
					}
					if n := st.nonce.Load(); n != usedNonce {
						usedNonce = n
						fresh := attackTemplates(src, dst.String(), *n)
						ts[0] = fresh[0]
					}
				}
				due := uint64(time.Since(start).Seconds() * per)
				if sent >= due {
					time.Sleep(time.Millisecond)
					continue
				}
				for burst := 0; sent < due && burst < 256; burst++ {
					sent++
					pkt := ts[int(sent)%len(ts)].stamp(uint64(g)*1_000_000_000 + sent)
					if _, err := c.WriteToUDPAddrPort(pkt, dst); err != nil {
						st.writeErrs.Add(1)
					} else {
						st.sent.Add(1)
					}
				}
			}
		}()
	}
	senders.Wait()
	// answers still on their way are read for a moment, then the sockets close
	time.Sleep(200 * time.Millisecond)
	for _, c := range conns {
		c.Close()
	}
	readers.Wait()
	return nil
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}
