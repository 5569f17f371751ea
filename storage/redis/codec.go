package redis

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/simpled/simpled/storage"
)

// The Redis codec of every record kind, in one place: each kind is its storage type
// (storage.Binding, Publication, Subscription, Message, Credential) encoded as JSON with the
// type's own json tags, the times in unix seconds so the Lua scripts can compare them. A
// record struct here embeds the storage type and overrides its time fields only: encoding/json
// lets a field of the outer struct hide the embedded field of the same JSON name, so no field
// list is written twice and a field added to a storage type is stored with no change here.
// Rules are stored as their value (storage.Rule*), nonce counts and the nonce epoch as
// decimal numbers.
//
// The scripts rely on two facts of this form: publications and subscriptions start with
// {"expires_at":<unix s> (a record field declared before the embedded type is written
// first), and no JSON value holds a raw newline, so a newline ends the header of a value with
// a body (messages, publications). Values written by earlier versions, with the same names in
// another order, decode the same: JSON objects are read by name.

// bindingRecord is a binding as stored in reg:{aor}.
type bindingRecord struct {
	*storage.Binding
	ExpiresAt int64 `json:"expires_at"`
	UpdatedAt int64 `json:"updated_at"`
}

// publicationRecord is the header of a publication as stored in pub:{aor} (the entity tag is
// the hash field, the body follows the header).
type publicationRecord struct {
	ExpiresAt int64 `json:"expires_at"` // first: the scripts read and rewrite it in place
	*storage.Publication
	UpdatedAt int64 `json:"updated_at"`
}

// subscriptionRecord is a subscription as stored in sub:{aor}.
type subscriptionRecord struct {
	ExpiresAt int64 `json:"expires_at"` // first: the scripts read it with a match
	*storage.Subscription
	CreatedAt int64 `json:"created_at"`
}

// messageRecord is the header of a message as stored in msg:{aor} (the ID is the hash field,
// the body follows the header).
type messageRecord struct {
	*storage.Message
	StoredAt  int64 `json:"stored_at"`
	ExpiresAt int64 `json:"expires_at"`
}

// fromUnix reads a stored time back: unix seconds, as UTC.
func fromUnix(s int64) time.Time { return time.Unix(s, 0).UTC() }

// marshalJSON encodes v without HTML escaping (stored values read as what they hold) and
// with encoding/json's trailing newline; extra is room for what the caller appends.
func marshalJSON(v any, extra int) (*bytes.Buffer, error) {
	var buf bytes.Buffer
	buf.Grow(256 + extra)
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return &buf, nil
}

// encodeJSON is marshalJSON without the newline.
func encodeJSON(v any) (string, error) {
	buf, err := marshalJSON(v, 0)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

// withBody is the stored form of a value with a body (offline messages, publications): the
// JSON header, a newline, then the body bytes as they are (JSON never holds a raw newline, so
// the first one ends the header). Binary-safe, and the body is never re-encoded.
func withBody(header any, body []byte) ([]byte, error) {
	buf, err := marshalJSON(header, len(body))
	if err != nil {
		return nil, err
	}
	buf.Write(body)
	return buf.Bytes(), nil
}

// splitBody reads withBody's form: it decodes the header into header and returns the body
// (nil when empty). what names the value in errors.
func splitBody(what, v string, header any) ([]byte, error) {
	h, body, ok := strings.Cut(v, "\n")
	if !ok {
		return nil, fmt.Errorf("corrupt %s: no header", what)
	}
	if err := json.Unmarshal([]byte(h), header); err != nil {
		return nil, fmt.Errorf("corrupt %s: %w", what, err)
	}
	if body == "" {
		return nil, nil
	}
	return []byte(body), nil
}

func encodeBinding(b *storage.Binding) (string, error) {
	return encodeJSON(&bindingRecord{Binding: b, ExpiresAt: b.ExpiresAt.Unix(), UpdatedAt: b.UpdatedAt.Unix()})
}

func decodeBinding(js string) (storage.Binding, error) {
	var b storage.Binding
	r := bindingRecord{Binding: &b}
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		return storage.Binding{}, fmt.Errorf("corrupt binding: %w", err)
	}
	b.ExpiresAt, b.UpdatedAt = fromUnix(r.ExpiresAt), fromUnix(r.UpdatedAt)
	if len(b.Path) == 0 {
		b.Path = nil
	}
	return b, nil
}

// encodePublication returns the stored value of p: header, newline, body.
func encodePublication(p *storage.Publication) ([]byte, error) {
	return withBody(&publicationRecord{Publication: p, ExpiresAt: p.ExpiresAt.Unix(), UpdatedAt: p.UpdatedAt.Unix()}, p.Body)
}

// decodePublication turns the stored value v of etag back into a publication.
func decodePublication(etag, v string) (storage.Publication, error) {
	var p storage.Publication
	r := publicationRecord{Publication: &p}
	body, err := splitBody("publication", v, &r)
	if err != nil {
		return storage.Publication{}, err
	}
	p.ETag, p.Body = etag, body
	p.ExpiresAt, p.UpdatedAt = fromUnix(r.ExpiresAt), fromUnix(r.UpdatedAt)
	return p, nil
}

func encodeSubscription(s *storage.Subscription) (string, error) {
	return encodeJSON(&subscriptionRecord{Subscription: s, ExpiresAt: s.ExpiresAt.Unix(), CreatedAt: s.CreatedAt.Unix()})
}

func decodeSubscription(js string) (storage.Subscription, error) {
	var s storage.Subscription
	r := subscriptionRecord{Subscription: &s}
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		return storage.Subscription{}, fmt.Errorf("corrupt subscription: %w", err)
	}
	s.ExpiresAt, s.CreatedAt = fromUnix(r.ExpiresAt), fromUnix(r.CreatedAt)
	if len(s.Accept) == 0 {
		s.Accept = nil
	}
	if len(s.RouteSet) == 0 {
		s.RouteSet = nil
	}
	return s, nil
}

// encodeMessage returns the stored value of m: header, newline, body (m.ID is the hash field,
// not stored in the value).
func encodeMessage(m *storage.Message) ([]byte, error) {
	return withBody(&messageRecord{Message: m, StoredAt: m.StoredAt.Unix(), ExpiresAt: m.ExpiresAt.Unix()}, m.Body)
}

// decodeMessage turns a stored value back into the message id.
func decodeMessage(id, v string) (storage.Message, error) {
	var m storage.Message
	r := messageRecord{Message: &m}
	body, err := splitBody("message", v, &r)
	if err != nil {
		return storage.Message{}, err
	}
	m.ID, m.Body = id, body
	m.StoredAt, m.ExpiresAt = fromUnix(r.StoredAt), fromUnix(r.ExpiresAt)
	return m, nil
}

func encodeCredential(c *storage.Credential) (string, error) {
	js, err := json.Marshal(c)
	return string(js), err
}

func decodeCredential(js string) (storage.Credential, error) {
	var c storage.Credential
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		return storage.Credential{}, fmt.Errorf("corrupt credential: %w", err)
	}
	return c, nil
}

// encodeEpoch and decodeEpoch are the stored form of the nonce epoch (nonce-epoch): decimal,
// never zero.
func encodeEpoch(e uint64) string { return strconv.FormatUint(e, 10) }

func decodeEpoch(v string) (uint64, error) {
	e, err := strconv.ParseUint(v, 10, 64)
	if err != nil || e == 0 {
		return 0, fmt.Errorf("corrupt nonce epoch %q", v)
	}
	return e, nil
}

// decodeUntil reads a known-user record (known:{aor}): the until in unix seconds.
func decodeUntil(v string) (int64, error) {
	u, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("corrupt until %q", v)
	}
	return u, nil
}

// asJSONString returns s as it reads back from JSON: encoding/json turns invalid UTF-8 into
// U+FFFD, so a Call-ID compared in Lua must be the decoded form.
func asJSONString(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	js, _ := json.Marshal(s) // a string always marshals
	var out string
	_ = json.Unmarshal(js, &out)
	return out
}

func cloneBinding(b storage.Binding) storage.Binding {
	b.Path = slices.Clone(b.Path)
	return b
}

func cloneSubscription(s storage.Subscription) storage.Subscription {
	s.Accept, s.RouteSet = slices.Clone(s.Accept), slices.Clone(s.RouteSet)
	return s
}
