package registrar

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/base/sipx"
	"github.com/simpled/simpled/storage"

	"github.com/emiago/sipgo/sip"
)

// errBadRequest is a REGISTER the registrar answers with 400; its text is the reason phrase.
type errBadRequest string

func (e errBadRequest) Error() string { return string(e) }

// errIntervalTooBrief is a REGISTER asking for an expiry below the minimum (423).
var errIntervalTooBrief = errors.New("registrar: interval too brief")

// maxContactURI bounds one contact's text: a binding is stored and returned on every REGISTER
// and every lookup, so a single huge contact must not bloat the store.
const maxContactURI = 2048

// parseContacts turns the REGISTER's Contact headers into binding changes (RFC 3261 §10.3
// steps 6-7): expiry from the contact's expires parameter, else the Expires header, else the
// default; below the minimum (and not 0) → errIntervalTooBrief; above the maximum → clamped.
// wildcard is true for "Contact: *", which must be the only contact and come with Expires: 0.
func (r *Registrar) parseContacts(req *sip.Request, now time.Time, callID string, cseq uint32) (changes []storage.BindingChange, wildcard bool, err error) {
	hdrExpires, hasExpires, err := sipx.Expires(req)
	if err != nil {
		return nil, false, errBadRequest("Malformed Expires")
	}
	count := sipx.Count(req, "Contact")
	seen := make(map[string]bool, count)
	for h := range sipx.All(req, "Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			return nil, false, errBadRequest("Malformed Contact")
		}
		if c.Address.Wildcard {
			if count != 1 || !hasExpires || hdrExpires != 0 {
				return nil, false, errBadRequest("Wildcard Contact Needs Expires 0")
			}
			return nil, true, nil
		}
		if !sipx.IsSIPScheme(c.Address.Scheme) || !sipx.ValidHost(c.Address.Host) {
			return nil, false, errBadRequest("Invalid Contact URI")
		}
		expires := uint32(r.opts.DefaultExpires)
		if v, ok := c.Params.Get("expires"); ok {
			if expires, err = sipx.ParseDeltaSeconds(v); err != nil {
				return nil, false, errBadRequest("Malformed Contact expires")
			}
		} else if hasExpires {
			expires = hdrExpires
		}
		if expires != 0 && expires < uint32(r.opts.MinExpires) {
			return nil, false, errIntervalTooBrief
		}
		if expires > uint32(r.opts.MaxExpires) {
			expires = uint32(r.opts.MaxExpires)
		}
		q := -1
		if v, ok := c.Params.Get("q"); ok {
			if q, err = parseQ(v); err != nil {
				return nil, false, errBadRequest("Malformed Contact q")
			}
		}
		b, err := bindingOf(c)
		if err != nil {
			return nil, false, err
		}
		if seen[b.Key] {
			// The same device twice in one REGISTER: the last one wins (RFC 3261 §10.3 step 7
			// processes contacts in order); keep only the last change.
			for i := range changes {
				if changes[i].Binding.Key == b.Key {
					changes = append(changes[:i], changes[i+1:]...)
					break
				}
			}
		}
		seen[b.Key] = true
		b.Q = q
		b.CallID = callID
		b.CSeq = cseq
		b.ExpiresAt = now.Add(time.Duration(expires) * time.Second)
		b.UpdatedAt = now
		changes = append(changes, storage.BindingChange{Binding: b})
	}
	return changes, false, nil
}

// bindingOf derives a binding's identity and stored text from its Contact header.
func bindingOf(c *sip.ContactHeader) (storage.Binding, error) {
	var b storage.Binding
	contact, uri := storedContact(c)
	if len(uri) > maxContactURI || !sipx.Sanitize(uri) || !sipx.Sanitize(c.DisplayName) {
		return b, errBadRequest("Invalid Contact URI")
	}
	b.URI = uri
	if v, ok := c.Params.Get("+sip.instance"); ok {
		b.InstanceID = strings.Trim(v, `"`)
	}
	if v, ok := c.Params.Get("reg-id"); ok {
		id, err := strconv.Atoi(v)
		if err != nil || id < 0 {
			return b, errBadRequest("Malformed Contact reg-id")
		}
		b.RegID = id
	}
	switch {
	case b.InstanceID != "" && b.RegID > 0:
		b.Key = b.InstanceID + ";reg-id=" + strconv.Itoa(b.RegID)
	case b.InstanceID != "":
		b.Key = b.InstanceID
	default:
		b.Key = uriKey(&c.Address)
	}
	b.Contact = contact
	if len(b.Contact) > 2*maxContactURI || !sipx.Sanitize(b.Contact) {
		return b, errBadRequest("Invalid Contact")
	}
	return b, nil
}

// storedContact returns the text a binding stores of c, what sipgo's ContactHeader.Value
// prints without the expires and q parameters (the 200 gives the current ones), and the URI
// within it: sipgo prints the URI once, and both strings share one allocation.
func storedContact(c *sip.ContactHeader) (contact, uri string) {
	params := c.Params
	if params.Has("expires") || params.Has("q") {
		params = slices.DeleteFunc(params.Clone(), func(kv sip.HeaderKV) bool { return kv.K == "expires" || kv.K == "q" })
	}
	var sb strings.Builder
	sb.Grow(contactSize(c, params))
	if c.DisplayName != "" {
		sb.WriteString(`"`)
		sb.WriteString(c.DisplayName)
		sb.WriteString(`" `)
	}
	sb.WriteString("<")
	from := sb.Len()
	c.Address.StringWrite(&sb)
	to := sb.Len()
	sb.WriteString(">")
	if len(params) > 0 {
		sb.WriteString(";")
		params.ToStringWrite(';', &sb)
	}
	contact = sb.String()
	return contact, contact[from:to]
}

// contactSize is about the length of storedContact's text: enough for one allocation unless
// sipgo adds brackets and quotes.
func contactSize(c *sip.ContactHeader, params sip.HeaderParams) int {
	u := &c.Address
	n := len(c.DisplayName) + len(u.Scheme) + len(u.User) + len(u.Password) + len(u.Host) + 32
	for _, ps := range []sip.HeaderParams{u.UriParams, u.Headers, params} {
		for _, kv := range ps {
			n += len(kv.K) + len(kv.V) + 4
		}
	}
	return n
}

// uriKey is the comparison form of a contact URI without an instance id (RFC 3261 §19.1.4,
// simplified): scheme, user, lower-case host, port and transport; other parameters do not make
// a second binding.
func uriKey(u *sip.Uri) string {
	var buf [128]byte
	b := append(buf[:0], strings.ToLower(u.Scheme)...)
	b = append(b, ':')
	if u.User != "" {
		b = append(b, u.User...)
		b = append(b, '@')
	}
	b = append(b, strings.ToLower(u.Host)...)
	if u.Port > 0 {
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(u.Port), 10)
	}
	if t, ok := u.UriParams.Get("transport"); ok && t != "" {
		b = append(b, ";transport="...)
		b = append(b, strings.ToLower(t)...)
	}
	return string(b)
}

// parseQ parses a q-value (RFC 3261 §20.10: 0, 1, or 0.xxx) into thousandths.
func parseQ(s string) (int, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1 || len(s) > 5 {
		return 0, fmt.Errorf("registrar: q-value %q", s)
	}
	return int(f*1000 + 0.5), nil
}

// appendQ appends thousandths as a q-value.
func appendQ(b []byte, q int) []byte {
	switch {
	case q >= 1000:
		return append(b, '1')
	case q <= 0:
		return append(b, '0')
	}
	n := len(b)
	b = strconv.AppendFloat(b, float64(q)/1000, 'f', 3, 64)
	return b[:n+len(bytes.TrimRight(b[n:], "0"))]
}
