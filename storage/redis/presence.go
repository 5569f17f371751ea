package redis

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/simpled/simpled/storage"

	goredis "github.com/redis/go-redis/v9"
)

// Presence data (presence.Store). Keys, in the manner of the package doc:
//
//	pub:{aor}    hash    entity tag → publication: a JSON header (storage.Publication's
//	                     fields but ETag, the hash field, and Body, times in unix seconds,
//	                     expires_at always first), a newline, then the body bytes as they are
//	                     (binary safe, no base64); TTL = latest expiry + Options.KeyGrace,
//	                     relative to the caller's now
//	sub:{aor}    hash    subscription ID → subscription JSON (storage.Subscription's fields,
//	                     times in unix seconds, expires_at always first); TTL = latest expiry
//	                     written + Options.KeyGrace (PEXPIREAT on Redis's clock, never
//	                     shortened: PutSubscription does not read the other subscriptions)
//	rules:{aor}  hash    watcher → rule; no TTL
//	exp:{n}      zset    as for bindings, members "pub|<aor>|<etag>" and "sub|<aor>|<id>"
//
// Both values start with `{"expires_at":<unix s>` because Go writes a struct's fields in
// order: the scripts read the expiry with one anchored match, without decoding the value, and
// a refresh rewrites that number in place, so the header and body of a publication pass
// through Lua untouched (no re-encoding, see scripts.go). A value that does not start so is
// corrupt: Publish drops it like an expired publication, the sweeps delete it.
//
// Round trips: Publish is the script on pub:{aor} (drop expired, check SIP-If-Match, apply,
// TTL, atomically) and, when it succeeded, one pipeline for the index (ZADD of the new entity
// tag, ZREM of the tags it removed); should the ZADD fail it is tried once more, and if that
// fails too the publication has no index entry: ExpirePublications never reports it, but it
// is hidden once expired, dropped by the next Publish for the AOR and by the key's TTL at
// the latest. After a lost reply go-redis's retry of a refresh finds its entity tag gone and
// fails with storage.ErrETagMismatch (the client then publishes anew). PutSubscription is
// its script and a ZADD, DeleteSubscription its script and a ZREM; a ZADD that lands after a
// racing PutSubscription's for the same ID can leave the entry late by the difference of
// their expiries (as for bindings). Publications, Subscriptions, Subscription and the rules
// are one command each. ExpirePublications and ExpireSubscriptions are the shared sweep
// (sweep.go) on the "pub|" and "sub|" entries.

// Presence keys and index entry kinds.
func pubKey(aor string) string   { return "pub:{" + aor + "}" }
func subKey(aor string) string   { return "sub:{" + aor + "}" }
func rulesKey(aor string) string { return "rules:{" + aor + "}" }

const (
	pubPrefix = "pub|"
	subPrefix = "sub|"
)

// replyNoMatch is the error reply of publishScript when SIP-If-Match names no live
// publication.
const replyNoMatch = "SIMPLED_NOMATCH"

// wirePublication is the header of a publication as stored in pub:{aor}.
type wirePublication struct {
	ExpiresAt   int64  `json:"expires_at"` // first: the scripts read and rewrite it in place
	ContentType string `json:"content_type"`
	UpdatedAt   int64  `json:"updated_at"`
	Source      string `json:"source,omitempty"`
}

// wireSubscription is a subscription as stored in sub:{aor}: storage.Subscription's fields
// and JSON names, with the times in unix seconds.
type wireSubscription struct {
	ExpiresAt    int64    `json:"expires_at"` // first: the scripts read it with a match
	ID           string   `json:"id"`
	AOR          string   `json:"aor"`
	Event        string   `json:"event"`
	Watcher      string   `json:"watcher"`
	WatcherURI   string   `json:"watcher_uri"`
	WatcherName  string   `json:"watcher_name,omitempty"`
	CallID       string   `json:"call_id"`
	FromTag      string   `json:"from_tag"`
	Accept       []string `json:"accept,omitempty"`
	RouteSet     []string `json:"route_set,omitempty"`
	RemoteTarget string   `json:"remote_target"`
	RemoteCSeq   uint32   `json:"remote_cseq"`
	Transport    string   `json:"transport,omitempty"`
	Source       string   `json:"source,omitempty"`
	State        string   `json:"state"`
	CreatedAt    int64    `json:"created_at"`
	Node         string   `json:"node,omitempty"`
}

// marshalJSON encodes v without HTML escaping (stored values read as what they hold) and
// with encoding/json's trailing newline.
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

// encodePublication returns the stored value of the publication a new or modifying op stores
// (its body changed at op.Now): the JSON header, a newline (which ends it: JSON never holds a
// raw one), then the body bytes as they are.
func encodePublication(op *storage.PublishOp) ([]byte, error) {
	w := wirePublication{ExpiresAt: op.ExpiresAt.Unix(), ContentType: op.ContentType, UpdatedAt: op.Now.Unix(), Source: op.Source}
	buf, err := marshalJSON(&w, len(op.Body))
	if err != nil {
		return nil, err
	}
	buf.Write(op.Body)
	return buf.Bytes(), nil
}

// decodePublication turns the stored value v of etag back into a publication.
func decodePublication(etag, v string) (storage.Publication, error) {
	header, body, ok := strings.Cut(v, "\n")
	if !ok {
		return storage.Publication{}, errors.New("corrupt publication: no header")
	}
	var w wirePublication
	if err := json.Unmarshal([]byte(header), &w); err != nil {
		return storage.Publication{}, fmt.Errorf("corrupt publication: %w", err)
	}
	p := storage.Publication{
		ETag: etag, ContentType: w.ContentType, ExpiresAt: time.Unix(w.ExpiresAt, 0).UTC(),
		UpdatedAt: time.Unix(w.UpdatedAt, 0).UTC(), Source: w.Source,
	}
	if body != "" {
		p.Body = []byte(body)
	}
	return p, nil
}

func encodeSubscription(s *storage.Subscription) (string, error) {
	w := wireSubscription{
		ExpiresAt: s.ExpiresAt.Unix(), ID: s.ID, AOR: s.AOR, Event: s.Event, Watcher: s.Watcher,
		WatcherURI: s.WatcherURI, WatcherName: s.WatcherName, CallID: s.CallID, FromTag: s.FromTag,
		Accept: s.Accept, RouteSet: s.RouteSet, RemoteTarget: s.RemoteTarget, RemoteCSeq: s.RemoteCSeq,
		Transport: s.Transport, Source: s.Source, State: s.State, CreatedAt: s.CreatedAt.Unix(), Node: s.Node,
	}
	buf, err := marshalJSON(&w, 0)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(buf.String(), "\n"), nil
}

func cloneSubscription(s storage.Subscription) storage.Subscription {
	s.Accept, s.RouteSet = slices.Clone(s.Accept), slices.Clone(s.RouteSet)
	return s
}

func decodeSubscription(js string) (storage.Subscription, error) {
	var w wireSubscription
	if err := json.Unmarshal([]byte(js), &w); err != nil {
		return storage.Subscription{}, fmt.Errorf("corrupt subscription: %w", err)
	}
	if len(w.Accept) == 0 {
		w.Accept = nil
	}
	if len(w.RouteSet) == 0 {
		w.RouteSet = nil
	}
	return storage.Subscription{
		ID: w.ID, AOR: w.AOR, Event: w.Event, Watcher: w.Watcher, WatcherURI: w.WatcherURI,
		WatcherName: w.WatcherName, CallID: w.CallID, FromTag: w.FromTag, Accept: w.Accept,
		RouteSet: w.RouteSet, RemoteTarget: w.RemoteTarget, RemoteCSeq: w.RemoteCSeq,
		Transport: w.Transport, Source: w.Source, State: w.State,
		ExpiresAt: time.Unix(w.ExpiresAt, 0).UTC(), CreatedAt: time.Unix(w.CreatedAt, 0).UTC(), Node: w.Node,
	}, nil
}

// checkPublish returns why op is malformed (a caller's bug, not a sentinel), or nil.
func checkPublish(op *storage.PublishOp) error {
	switch {
	case op.Remove && op.IfMatch == "":
		return errors.New("remove without IfMatch")
	case op.Remove:
		return nil
	case op.NewETag == "":
		return errors.New("empty NewETag")
	case op.IfMatch == "" && op.Body == nil:
		return errors.New("new publication without Body")
	case op.ExpiresAt.Unix() <= op.Now.Unix():
		return fmt.Errorf("ExpiresAt %v not after Now %v", op.ExpiresAt, op.Now)
	}
	return nil
}

// checkRule returns an error unless watcher is set and rule is a storage.Rule* value.
func checkRule(watcher, rule string) error {
	if watcher == "" || !slices.Contains([]string{storage.RuleAllow, storage.RuleBlock, storage.RulePoliteBlock, storage.RulePending}, rule) {
		return fmt.Errorf("watcher %q, rule %q: want a watcher and allow, block, polite-block or pending", watcher, rule)
	}
	return nil
}

// byUpdated is the order of Publications: oldest UpdatedAt first, then ETag.
func byUpdated(a, b storage.Publication) int {
	if c := a.UpdatedAt.Compare(b.UpdatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.ETag, b.ETag)
}

func byID(a, b storage.Subscription) int { return strings.Compare(a.ID, b.ID) }

func pubMember(aor, etag string) string { return indexMember(pubPrefix, aor, etag) }
func subMember(aor, id string) string   { return indexMember(subPrefix, aor, id) }

// Publish applies op to aor's publications atomically, with the semantics of
// storage.PublishOp: publishScript, then the index pipeline. On an error nothing changed.
func (s *Store) Publish(ctx context.Context, aor string, op storage.PublishOp) (storage.Publication, error) {
	const step = "publish"
	if err := checkPublish(&op); err != nil {
		return storage.Publication{}, fmt.Errorf("redis: %s: %s: %w", step, aor, err)
	}
	mode, etag := "remove", op.IfMatch
	var value []byte
	switch {
	case op.Remove:
	case op.IfMatch != "" && op.Body == nil:
		mode, etag = "refresh", op.NewETag
	default:
		mode, etag = "store", op.NewETag
		var err error
		if value, err = encodePublication(&op); err != nil {
			return storage.Publication{}, fmt.Errorf("redis: %s: %s: %w", step, aor, err)
		}
	}
	exp := op.ExpiresAt.Unix()
	rep, err := publishScript.Run(ctx, s.c, []string{pubKey(aor)}, op.Now.Unix(), op.IfMatch, op.NewETag,
		mode, exp, value, s.grace.Milliseconds()).StringSlice()
	switch {
	case err == nil:
	case goredis.HasErrorPrefix(err, replyNoMatch):
		return storage.Publication{}, fmt.Errorf("redis: %s: %s: %q: %w", step, aor, op.IfMatch, storage.ErrETagMismatch)
	default:
		return storage.Publication{}, unavailable(step, err)
	}
	if len(rep) == 0 {
		return storage.Publication{}, fmt.Errorf("redis: %s: %s: unexpected script reply %q", step, aor, rep)
	}

	// The index follows the script even if the caller gives up now (the client's timeouts
	// still bound it): the new entity tag's entry, and none for the tags the script removed.
	ictx := context.WithoutCancel(ctx)
	gone := make([]any, 0, len(rep))
	for _, t := range rep[1:] {
		gone = append(gone, pubMember(aor, t))
	}
	if op.IfMatch != "" && (op.Remove || op.IfMatch != etag) {
		gone = append(gone, pubMember(aor, op.IfMatch))
	}
	ex := expKey(aor)
	z := goredis.Z{Score: float64(exp), Member: pubMember(aor, etag)}
	pipe := s.c.Pipeline()
	var zadd *goredis.IntCmd
	if !op.Remove {
		zadd = pipe.ZAdd(ictx, ex, z)
	}
	if len(gone) > 0 {
		pipe.ZRem(ictx, ex, gone...) // best effort: an entry left behind is dropped by the sweep
	}
	_, _ = pipe.Exec(ictx)
	if zadd != nil && zadd.Err() != nil {
		_ = s.c.ZAdd(ictx, ex, z).Err()
	}

	p, err := decodePublication(etag, rep[0])
	if err != nil {
		return storage.Publication{}, fmt.Errorf("redis: %s: %s: %w", step, aor, err)
	}
	return p, nil
}

// Publications returns aor's publications live at now, oldest UpdatedAt first (ties by
// ETag); nil when there are none (one HGETALL).
func (s *Store) Publications(ctx context.Context, aor string, now time.Time) ([]storage.Publication, error) {
	return liveValues(ctx, s, "publications", aor, pubKey(aor), now, decodePublication,
		func(p *storage.Publication) time.Time { return p.ExpiresAt }, byUpdated)
}

// liveValues reads the hash key of aor (one HGETALL), decodes every field's value, and
// returns those whose expiry is after now, sorted by order; nil when there are none. A value
// that does not decode is an error.
func liveValues[T any](ctx context.Context, s *Store, step, aor, key string, now time.Time,
	decode func(field, v string) (T, error), expiry func(*T) time.Time, order func(a, b T) int) ([]T, error) {
	vals, err := s.c.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, unavailable(step, err)
	}
	n := now.Unix()
	var out []T
	for f, v := range vals {
		x, err := decode(f, v)
		if err != nil {
			return nil, fmt.Errorf("redis: %s: %s: %q: %w", step, aor, f, err)
		}
		if expiry(&x).Unix() > n {
			out = append(out, x)
		}
	}
	slices.SortFunc(out, order)
	return out, nil
}

// pubSweep is the publications' part of the shared expiry sweep.
var pubSweep = sweepKind[storage.ExpiredPublication]{
	prefix: pubPrefix,
	script: expirePresenceScript,
	keys:   func(aor string) []string { return []string{pubKey(aor)} },
	decode: func(aor, etag, v string) (storage.ExpiredPublication, error) {
		p, err := decodePublication(etag, v)
		return storage.ExpiredPublication{AOR: aor, Publication: p}, err
	},
}

// ExpirePublications removes at most limit publications that expired at now, earliest first,
// over all AORs, and returns them; each is returned by exactly one call, whichever node makes
// it. It works as SweepExpired does for bindings, on the "pub|" entries of the same index.
// When Redis fails after some publications were removed, those are returned without an error
// (the next call reports the error); they are never dropped.
func (s *Store) ExpirePublications(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredPublication, error) {
	return pubSweep.sweep(ctx, s, "expire publications", now, limit)
}

// PutSubscription stores sub whole under sub.AOR and sub.ID; with minCSeq > 0 only if no
// subscription with that ID is stored (expired or not) whose RemoteCSeq is minCSeq or more,
// else it fails with storage.ErrStale and writes nothing: putSubscriptionScript, then the
// ZADD of its index entry.
func (s *Store) PutSubscription(ctx context.Context, sub storage.Subscription, minCSeq uint32) error {
	const step = "put subscription"
	if sub.ID == "" {
		return fmt.Errorf("redis: %s: %s: empty ID", step, sub.AOR)
	}
	js, err := encodeSubscription(&sub)
	if err != nil {
		return fmt.Errorf("redis: %s: %s: %w", step, sub.AOR, err)
	}
	exp := sub.ExpiresAt.Unix()
	err = putSubscriptionScript.Run(ctx, s.c, []string{subKey(sub.AOR)}, sub.ID, minCSeq, js, exp, s.grace.Milliseconds()).Err()
	switch {
	case err == nil:
	case goredis.HasErrorPrefix(err, replyStale):
		return fmt.Errorf("redis: %s: %s: %q: CSeq not below %d: %w", step, sub.AOR, sub.ID, minCSeq, storage.ErrStale)
	default:
		return unavailable(step, err)
	}
	ictx := context.WithoutCancel(ctx)
	ex, z := expKey(sub.AOR), goredis.Z{Score: float64(exp), Member: subMember(sub.AOR, sub.ID)}
	if s.c.ZAdd(ictx, ex, z).Err() != nil {
		_ = s.c.ZAdd(ictx, ex, z).Err() // once more; then the key's TTL still ends it
	}
	return nil
}

// Subscription returns aor's subscription id live at now, or storage.ErrNotFound (one
// HGET).
func (s *Store) Subscription(ctx context.Context, aor, id string, now time.Time) (storage.Subscription, error) {
	const step = "subscription"
	js, err := s.c.HGet(ctx, subKey(aor), id).Result()
	if errors.Is(err, goredis.Nil) {
		return storage.Subscription{}, fmt.Errorf("redis: %s: %s: %q: %w", step, aor, id, storage.ErrNotFound)
	}
	if err != nil {
		return storage.Subscription{}, unavailable(step, err)
	}
	sub, err := decodeSubscription(js)
	if err != nil {
		return storage.Subscription{}, fmt.Errorf("redis: %s: %s: %q: %w", step, aor, id, err)
	}
	if sub.Expired(now) {
		return storage.Subscription{}, fmt.Errorf("redis: %s: %s: %q: %w", step, aor, id, storage.ErrNotFound)
	}
	return sub, nil
}

// Subscriptions returns aor's subscriptions live at now, ordered by ID; nil when there are
// none (one HGETALL).
func (s *Store) Subscriptions(ctx context.Context, aor string, now time.Time) ([]storage.Subscription, error) {
	return liveValues(ctx, s, "subscriptions", aor, subKey(aor), now,
		func(_, js string) (storage.Subscription, error) { return s.subs.get(js, decodeSubscription) },
		func(sub *storage.Subscription) time.Time { return sub.ExpiresAt }, byID)
}

// DeleteSubscription removes aor's subscription id and returns it as it was, or fails with
// storage.ErrNotFound when it is not stored or has expired at now (an expired one is left for
// ExpireSubscriptions to report): deleteSubscriptionScript, then the ZREM of its index entry
// (best effort: an entry left behind is dropped by the sweep when it comes due). A value that
// does not decode is deleted and reported as an error.
func (s *Store) DeleteSubscription(ctx context.Context, aor, id string, now time.Time) (storage.Subscription, error) {
	const step = "delete subscription"
	rep, err := deleteSubscriptionScript.Run(ctx, s.c, []string{subKey(aor)}, id, now.Unix()).StringSlice()
	if err != nil {
		return storage.Subscription{}, unavailable(step, err)
	}
	if len(rep) != 2 {
		return storage.Subscription{}, fmt.Errorf("redis: %s: %s: %q: %w", step, aor, id, storage.ErrNotFound)
	}
	_ = s.c.ZRem(context.WithoutCancel(ctx), expKey(aor), subMember(aor, id)).Err()
	sub, err := decodeSubscription(rep[1])
	if err == nil && rep[0] != "deleted" {
		err = errors.New("corrupt subscription: no leading expires_at")
	}
	if err != nil {
		return storage.Subscription{}, fmt.Errorf("redis: %s: %s: %q: removed: %w", step, aor, id, err)
	}
	return sub, nil
}

// subSweep is the subscriptions' part of the shared expiry sweep.
var subSweep = sweepKind[storage.ExpiredSubscription]{
	prefix: subPrefix,
	script: expirePresenceScript,
	keys:   func(aor string) []string { return []string{subKey(aor)} },
	decode: func(aor, _, js string) (storage.ExpiredSubscription, error) {
		sub, err := decodeSubscription(js)
		return storage.ExpiredSubscription{AOR: aor, Subscription: sub}, err
	},
}

// ExpireSubscriptions removes at most limit subscriptions that expired at now, earliest
// first, over all AORs, and returns them, each by exactly one call (as ExpirePublications).
func (s *Store) ExpireSubscriptions(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredSubscription, error) {
	return subSweep.sweep(ctx, s, "expire subscriptions", now, limit)
}

// SetRule sets aor's rule for watcher (one HSET).
func (s *Store) SetRule(ctx context.Context, aor, watcher, rule string) error {
	const step = "set rule"
	if err := checkRule(watcher, rule); err != nil {
		return fmt.Errorf("redis: %s: %s: %w", step, aor, err)
	}
	if err := s.c.HSet(ctx, rulesKey(aor), watcher, rule).Err(); err != nil {
		return unavailable(step, err)
	}
	return nil
}

// DeleteRule removes aor's rule for watcher, or fails with storage.ErrNotFound (one HDEL).
func (s *Store) DeleteRule(ctx context.Context, aor, watcher string) error {
	const step = "delete rule"
	n, err := s.c.HDel(ctx, rulesKey(aor), watcher).Result()
	if err != nil {
		return unavailable(step, err)
	}
	if n == 0 {
		return fmt.Errorf("redis: %s: %s: %q: %w", step, aor, watcher, storage.ErrNotFound)
	}
	return nil
}

// Rules returns aor's rules, watcher → rule; an empty (non-nil) map when there are none (one
// HGETALL).
func (s *Store) Rules(ctx context.Context, aor string) (map[string]string, error) {
	m, err := s.c.HGetAll(ctx, rulesKey(aor)).Result()
	if err != nil {
		return nil, unavailable("rules", err)
	}
	if m == nil {
		m = map[string]string{}
	}
	return m, nil
}

// presenceLib is Lua shared by the presence scripts.
const presenceLib = `
-- expiry returns the expires_at (unix s) a stored publication or subscription starts with,
-- or nil when the value does not start as Go writes it.
local function expiry(v)
  return tonumber(string.match(v, '^{"expires_at":(%-?%d+)[,}]'))
end
`

// publishScript implements Publish (storage.PublishOp's rules, in order).
//
//	KEYS[1]  pub:{aor}
//	ARGV     now (unix s), if_match ('' for a new publication), new etag, mode ('store': a
//	         new or modified publication, 'refresh' or 'remove'), expires_at (unix s), the
//	         stored value (for 'store'), grace (ms)
//
// It reads every publication's expiry: the expired ones, and values that do not parse, are
// dropped, unless if_match names no live publication, in which case it replies the error
// SIMPLED_NOMATCH and writes nothing. A refresh re-stores if_match's value under the new
// etag with expires_at rewritten in place. It replies {value, dropped etags...}: the value
// as now stored (for a removal: as it was), then the entity tags of the dropped
// publications. On success the key's TTL is set to the latest expiry + grace (when none is
// left the key is gone with its last field).
var publishScript = goredis.NewScript(presenceLib + `
local now, ifm, etag, mode = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local exp, grace = tonumber(ARGV[5]), tonumber(ARGV[7])
local live, drop = {}, {}
local raw = redis.call('HGETALL', KEYS[1])
for i = 1, #raw, 2 do
  local e = expiry(raw[i + 1])
  if e and e > now then
    live[raw[i]] = {raw[i + 1], e}
  else
    drop[#drop + 1] = raw[i]
  end
end
local old
if ifm ~= '' then
  old = live[ifm]
  if not old then return redis.error_reply('SIMPLED_NOMATCH') end
end

for i = 1, #drop, 1000 do
  redis.call('HDEL', KEYS[1], unpack(drop, i, math.min(i + 999, #drop)))
end
local v
if old then
  redis.call('HDEL', KEYS[1], ifm)
  live[ifm] = nil
end
if mode == 'remove' then
  v = old[1]
else
  if mode == 'refresh' then
    local digits = string.match(old[1], '^{"expires_at":(%-?%d+)')
    v = '{"expires_at":' .. ARGV[5] .. string.sub(old[1], 15 + #digits)
  else
    v = ARGV[6]
  end
  redis.call('HSET', KEYS[1], etag, v)
  live[etag] = {v, exp}
end
local maxexp = nil
for _, p in pairs(live) do
  if maxexp == nil or p[2] > maxexp then maxexp = p[2] end
end
if maxexp ~= nil then
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', (maxexp - now) * 1000 + grace))
end
local out = {v}
for i = 1, #drop do out[#out + 1] = drop[i] end
return out
`)

// putSubscriptionScript implements PutSubscription.
//
//	KEYS[1]  sub:{aor}
//	ARGV     id, min_cseq, subscription JSON, expires_at (unix s), grace (ms)
//
// With min_cseq > 0 it replies the error SIMPLED_STALE and writes nothing when the stored
// subscription id has a remote_cseq of min_cseq or more (a stored value that does not decode
// is replaced). Else it stores the JSON, replies 1, and makes the key live at least until
// max(expires_at, Redis's now) + grace: PEXPIREAT, never shortening a TTL already set.
var putSubscriptionScript = goredis.NewScript(`
local minc = tonumber(ARGV[2])
if minc > 0 then
  local v = redis.call('HGET', KEYS[1], ARGV[1])
  if v then
    local ok, b = pcall(cjson.decode, v)
    if ok and type(b) == 'table' and type(b.remote_cseq) == 'number' and b.remote_cseq >= minc then
      return redis.error_reply('SIMPLED_STALE')
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
local t = redis.call('TIME')
local at = string.format('%.0f', math.max(tonumber(ARGV[4]), tonumber(t[1])) * 1000 + tonumber(ARGV[5]))
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIREAT', KEYS[1], at)
else
  redis.call('PEXPIREAT', KEYS[1], at, 'GT')
end
return 1
`)

// deleteSubscriptionScript deletes one subscription unless it has expired.
//
//	KEYS[1]  sub:{aor}
//	ARGV     id, now (unix s)
//
// It replies {"deleted", JSON} when it deleted a live subscription, {"corrupt", value} when
// it deleted a value that does not parse, {"expired"} when the subscription has expired (it
// is left for the sweep), or {"none"}.
var deleteSubscriptionScript = goredis.NewScript(presenceLib + `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {'none'} end
local e = expiry(v)
if e and e <= tonumber(ARGV[2]) then return {'expired'} end
redis.call('HDEL', KEYS[1], ARGV[1])
if not e then return {'corrupt', v} end
return {'deleted', v}
`)

// expirePresenceScript deletes one publication from pub:{aor}, or one subscription from
// sub:{aor}, if it has expired at now.
//
//	KEYS[1]  pub:{aor} or sub:{aor}
//	ARGV     etag or subscription ID, now (unix s)
//
// It replies as expireScript does: {"expired", value}, {"live", expires_at} (the index entry
// must be put back), {"corrupt", value} (deleted: it cannot expire otherwise) or {"none"}.
var expirePresenceScript = goredis.NewScript(presenceLib + `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {'none'} end
local e = expiry(v)
if e and e > tonumber(ARGV[2]) then return {'live', string.format('%.0f', e)} end
redis.call('HDEL', KEYS[1], ARGV[1])
if not e then return {'corrupt', v} end
return {'expired', v}
`)
