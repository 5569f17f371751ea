package main

import (
	"strconv"
	"time"
)

// phase is one run of calls of one scenario at one rate: the setup (callees registered,
// presentities published) or the measured load.
type phase struct {
	cfg     *config
	name    string
	run     uint32
	rate    float64
	calls   int
	hardEnd time.Duration // since the phase began: calls still open then have failed
	pool    pool          // whose AORs: users, callees
	poolN   int
	contact []string // callee sockets (message setup): member i registers contact[i%len]
	regURI  []byte   // sip:<domain>

	build  func(w *worker, b []byte, j int, c *call) []byte
	answer func(w *worker, j int, c *call, m *sipMsg, now int64)
	notify func(w *worker, j int, c *call, m *sipMsg, now int64)
}

// newPhase returns the phase of a scenario: register, register_auth, message, publish,
// subscribe, and the setups register_callees and publish_seed.
func newPhase(cfg *config, name string, rate float64, calls int) *phase {
	ph := &phase{cfg: cfg, name: name, rate: rate, calls: calls, pool: poolUsers, poolN: cfg.users,
		regURI: []byte("sip:" + cfg.domain)}
	switch name {
	case "register", "register_callees":
		ph.build, ph.answer = buildRegister, answerFinal
		if name == "register_callees" {
			ph.pool, ph.poolN = poolCallees, cfg.callees
		}
	case "register_auth":
		ph.build, ph.answer = buildRegister, answerRegisterAuth
	case "message":
		ph.build, ph.answer = buildMessage, answerFinal
		ph.pool, ph.poolN = poolCallees, cfg.callees
	case "publish", "publish_seed":
		ph.build, ph.answer = buildPublish, answerPublish
		if name == "publish_seed" {
			ph.poolN = cfg.presentities
		}
	case "subscribe":
		ph.build, ph.answer, ph.notify = buildSubscribe, answerSubscribe, notifySubscribe
		ph.poolN = cfg.presentities
	default:
		return nil
	}
	last := time.Duration(float64(max(calls-1, 0)) / rate * float64(time.Second))
	ph.hardEnd = last + cfg.drain
	return ph
}

// member returns the pool member of call j of socket k: each socket cycles through its own
// share of the pool (member % sockets == k), so that an AOR is always sent from the same
// socket, as from one sipp; a setup phase (calls == pool) takes each member once.
func (w *worker) member(j int) int {
	n, k := w.ph.cfg.sockets, w.k
	share := (w.ph.poolN - k + n - 1) / n
	if share <= 0 {
		return (k + j*n) % w.ph.poolN
	}
	return k + n*(j%share)
}

// number returns call j's number over all sockets, in order of start.
func (w *worker) number(j int) int { return w.k + j*w.ph.cfg.sockets }

func (w *worker) head(method string, j int, c *call) head {
	return head{method: method, cseq: 1, r: ref{run: w.ph.run, sock: w.k, call: j, txn: c.txn},
		laddr: w.laddr, domain: w.ph.cfg.domain}
}

// buildRegister: REGISTER sip:domain, Contact at this socket (or the member's callee
// socket), Expires 3600; the second of register_auth answers w.ch.
func buildRegister(w *worker, b []byte, j int, c *call) []byte {
	i := w.member(j)
	h := w.head("REGISTER", j, c)
	h.ruri = w.ph.regURI
	h.from, h.fromIdx, h.to, h.toIdx = w.ph.pool, i, w.ph.pool, i
	contact := w.laddr
	if len(w.ph.contact) > 0 {
		contact = w.ph.contact[i%len(w.ph.contact)]
	}
	if c.state == st1 {
		h.cseq = 2
	}
	b = appendHead(b, &h)
	b = appendContact(b, h.from, i, contact)
	b = append(b, "Expires: 3600\r\n"...)
	if c.state == st1 && w.ch != nil {
		user := appendUser(nil, h.from, i)
		cnonce := appendRef([]byte("c"), h.r)
		b = appendAuthorization(b, w.ch, user, []byte(password(h.from, i)), h.ruri, cnonce)
	}
	return appendEnd(b, nil)
}

// buildMessage: MESSAGE from sender to callee (number % callees), text/plain.
func buildMessage(w *worker, b []byte, j int, c *call) []byte {
	n := w.number(j)
	h := w.head("MESSAGE", j, c)
	h.from, h.to, h.toIdx = poolSender, poolCallees, n%w.ph.poolN
	b = appendHead(b, &h)
	b = append(b, "Content-Type: text/plain\r\n"...)
	body := append(w.out[len(w.out):], "Hello "...)
	body = appendUser(body, poolCallees, h.toIdx)
	body = append(body, ", this is benchmark message number "...)
	body = strconv.AppendInt(body, int64(n), 10)
	body = append(body, ".\n"...)
	return appendEnd(b, body)
}

// buildPublish: initial (PIDF open, note Online), modify (SIP-If-Match, note Away) and remove
// (Expires 0, SIP-If-Match, no body) of bench/sipp/publish.xml; publish_seed's one PUBLISH.
func buildPublish(w *worker, b []byte, j int, c *call) []byte {
	i := w.member(j)
	h := w.head("PUBLISH", j, c)
	h.from, h.fromIdx, h.to, h.toIdx = poolUsers, i, poolUsers, i
	h.cseq = int(c.state) + 1
	b = appendHead(b, &h)
	b = append(b, "Event: presence\r\n"...)
	if c.state == st2 {
		b = append(b, "Expires: 0\r\n"...)
	} else {
		b = append(b, "Expires: 3600\r\n"...)
	}
	if c.state != st0 && c.dlg != nil {
		b = appendHeader(b, "SIP-If-Match", c.dlg.etag)
	}
	if c.state == st2 {
		return appendEnd(b, nil)
	}
	b = append(b, "Content-Type: application/pidf+xml\r\n"...)
	tuple, note := "t"+strconv.Itoa(w.number(j)), "Online"
	switch {
	case w.ph.name == "publish_seed":
		tuple, note = "seed", "Available"
	case c.state == st1:
		note = "Away"
	}
	return appendEnd(b, appendPIDF(w.out[len(w.out):], poolUsers, i, w.ph.cfg.domain, tuple, note))
}

// buildSubscribe: SUBSCRIBE of watcher w<number> to presentity number % presentities,
// Expires 600; the un-SUBSCRIBE (Expires 0) goes in the dialog the 200 made.
func buildSubscribe(w *worker, b []byte, j int, c *call) []byte {
	n := w.number(j)
	h := w.head("SUBSCRIBE", j, c)
	h.from, h.fromIdx, h.to, h.toIdx = poolWatch, n, poolUsers, n%w.ph.poolN
	expires := "Expires: 600\r\n"
	if c.state == st2 {
		h.cseq = 2
		expires = "Expires: 0\r\n"
		if c.dlg != nil {
			h.toTag = c.dlg.toTag
			if len(c.dlg.target) > 0 {
				h.ruri = c.dlg.target
			}
		}
	}
	b = appendHead(b, &h)
	b = appendContact(b, poolWatch, n, w.laddr)
	b = append(b, "Event: presence\r\nAccept: application/pidf+xml\r\n"...)
	b = append(b, expires...)
	return appendEnd(b, nil)
}

// answerFinal ends a one-transaction call: a 2xx is a success, anything else a failure.
func answerFinal(w *worker, j int, c *call, m *sipMsg, now int64) {
	if m.status >= 300 {
		w.fail(j, now, m.status)
		return
	}
	w.end(j, now, true)
}

// answerRegisterAuth: the first REGISTER must be challenged (401/407 with an MD5 digest
// challenge), the second accepted.
func answerRegisterAuth(w *worker, j int, c *call, m *sipMsg, now int64) {
	if c.state == st1 {
		answerFinal(w, j, c, m, now)
		return
	}
	ch, ok := parseChallenge(m.authn)
	if (m.status != 401 && m.status != 407) || !ok || !ch.md5 {
		w.fail(j, now, m.status)
		return
	}
	c.state = st1
	w.ch = &ch
	w.send(j, now)
	w.ch = nil
}

// answerPublish: each 2xx but the last must carry a SIP-ETag, which the next PUBLISH names.
func answerPublish(w *worker, j int, c *call, m *sipMsg, now int64) {
	if m.status >= 300 || (c.state != st2 && len(m.etag) == 0) {
		w.fail(j, now, m.status)
		return
	}
	if c.state == st2 || w.ph.name == "publish_seed" {
		w.end(j, now, true)
		return
	}
	if c.dlg == nil {
		c.dlg = &dialog{}
	}
	c.dlg.etag = append(c.dlg.etag[:0], m.etag...)
	c.state++
	w.send(j, now)
}

// answerSubscribe: the SUBSCRIBE's 2xx opens the dialog (To tag, Contact); the call then
// waits for the first NOTIFY unless it came already. The un-SUBSCRIBE's 2xx likewise waits
// for the last NOTIFY.
func answerSubscribe(w *worker, j int, c *call, m *sipMsg, now int64) {
	if m.status >= 300 {
		w.fail(j, now, m.status)
		return
	}
	if c.state == st0 {
		c.dlg = &dialog{
			toTag:  append([]byte(nil), param(m.to, "tag")...),
			target: append([]byte(nil), uriOf(m.contact)...),
		}
		if c.flags&fNotify1 != 0 {
			c.state = st2
			w.send(j, now)
			return
		}
		w.wait(j, now, st1)
		return
	}
	if c.flags&fNotify2 != 0 {
		w.end(j, now, true)
		return
	}
	w.wait(j, now, st3)
}

// notifySubscribe: the first NOTIFY must say active (as the sipp scenario checks), the
// last terminated; a NOTIFY sent again is answered and otherwise ignored.
func notifySubscribe(w *worker, j int, c *call, m *sipMsg, now int64) {
	terminated := containsFold(m.subst, "terminated")
	active := !terminated && containsFold(m.subst, "active")
	switch c.state {
	case st0:
		if active {
			c.flags |= fNotify1
		} else if !terminated {
			w.fail(j, now, 0)
		}
	case st1:
		if !active {
			w.fail(j, now, 0)
			return
		}
		c.state = st2
		w.send(j, now)
	case st2:
		if terminated {
			c.flags |= fNotify2
		}
	case st3:
		if terminated {
			w.end(j, now, true)
		}
	}
}
