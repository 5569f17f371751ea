package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/storage"

	goredis "github.com/redis/go-redis/v9"
)

// Presence data (presence's PublicationStore, SubscriptionStore and RuleStore). Keys, in the manner of the package doc:
//
//	pub:{aor}    hash    entity tag → publication: a JSON header (storage.Publication's
//	                     JSON names: not ETag, the hash field, nor Body; times in unix s,
//	                     expires_at always first), a newline, then the body bytes as they are
//	                     (binary safe, no base64); TTL = latest expiry + Options.KeyGrace,
//	                     relative to the caller's now
//	sub:{aor}    hash    subscription ID → subscription JSON (storage.Subscription's JSON
//	                     names, times in unix seconds, expires_at always first); TTL = latest expiry
//	                     written + Options.KeyGrace (PEXPIREAT on Redis's clock, never
//	                     shortened: PutSubscription does not read the other subscriptions)
//	rules:{aor}  hash    watcher → rule; no TTL
//	exp:{n}      zset    as for bindings, members "pub|<aor>|<etag>" and "sub|<aor>|<id>"
//
// Both values start with `{"expires_at":<unix s>` because Go writes a struct's fields in
// order and their record structs (codec.go) declare it first: the scripts read the expiry with one anchored match, without decoding the value, and
// a refresh rewrites that number in place, so the header and body of a publication pass
// through Lua untouched (no re-encoding, see scripts.go). A value that does not start so is
// corrupt: Publish drops it like an expired publication, the sweeps delete it.
//
// Round trips: every operation is one round trip through the batcher (batch.go), shared with
// concurrent callers' commands: under load one write and one read carry many PUBLISHes and
// SUBSCRIBEs, and round trips, not Redis, were the bound. The index commands travel in the same
// pipeline as the script, as UpdateBindings' do (see the package doc): an index entry may
// be early, or point at nothing, but must never be later than its item's expiry, since the
// sweep verifies every entry it claims and puts back the entries of live items.
//
//   - Publish: [ZADD of the new entity tag (not for a removal), publishScript on pub:{aor}
//     (drop expired, SIP-If-Match, MaxPublications, apply, TTL, atomically), ZREM of the
//     If-Match tag (once the script ran that tag is gone, whatever its outcome: on a refusal
//     it was not live)]. A refusal (ErrETagMismatch, ErrTooManyPublications) names the stored
//     expiries of both tags, and one more round trip sets their entries back (ZREM of the
//     early one, ZADD LT of a stored one: an expired If-Match publication stays for the
//     sweep to report). After an unknown outcome (an error) the If-Match entry is put back
//     early, in the background (unknownOutcome). The entries of the expired publications
//     the script dropped are left to the sweep: they are due already, and it drops an entry whose item is gone. A failed
//     ZADD is tried once more; if that fails too the publication has no index entry:
//     ExpirePublications never reports it, but it is hidden once expired, dropped by the
//     next Publish for the AOR and by the key's TTL at the latest. After a lost reply
//     go-redis's retry of a refresh finds its entity tag gone and fails with
//     storage.ErrETagMismatch (the client then publishes anew); the retry of a new
//     publication finds its entity tag live and replaces it (it is not counted against
//     MaxPublications).
//   - PutSubscription: [ZADD, putSubscriptionScript]; after ErrStale, which names the stored
//     expiry, a ZADD LT sets the entry back. A ZADD that lands after a racing
//     PutSubscription's for the same ID can leave the entry late by the difference of their
//     expiries (as for bindings).
//   - DeleteSubscription: [deleteSubscriptionScript, ZREM]; an expired subscription (left for
//     the sweep) gets its entry back with one more ZADD LT, and after an error the entry is
//     put back early, in the background. A PutSubscription of the same ID
//     racing it on another connection can lose its entry to the ZREM (as before, when the
//     ZREM followed the script).
//   - Publications, Subscriptions, Subscription, Rules, SetRule and DeleteRule: one command.
//
// ExpirePublications and ExpireSubscriptions are the shared sweep (sweep.go) on the "pub|" and
// "sub|" entries.

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

func pubMember(aor, etag string) string { return indexMember(pubPrefix, aor, etag) }
func subMember(aor, id string) string   { return indexMember(subPrefix, aor, id) }

// Publish applies op to aor's publications atomically, with the semantics of
// storage.PublishOp, in one round trip (see the file comment). On an error nothing changed
// (in the publications; the index may hold harmless early entries).
func (s *Store) Publish(ctx context.Context, aor string, op storage.PublishOp) (storage.Publication, error) {
	const step = "publish"
	if err := op.Validate(); err != nil {
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
		// A new or modified publication: its body changed at op.Now.
		p := storage.Publication{ContentType: op.ContentType, Body: op.Body, ExpiresAt: op.ExpiresAt, UpdatedAt: op.Now, Source: op.Source}
		if value, err = encodePublication(&p); err != nil {
			return storage.Publication{}, fmt.Errorf("redis: %s: %s: %w", step, aor, err)
		}
	}
	ex, exp := expKey(aor), op.ExpiresAt.Unix()
	z := goredis.Z{Score: float64(exp), Member: pubMember(aor, etag)}
	var pre, post []goredis.Cmder
	var zadd *goredis.IntCmd
	if !op.Remove {
		zadd = goredis.NewIntCmd(ctx, "zadd", ex, z.Score, z.Member)
		pre = []goredis.Cmder{zadd}
	}
	// The If-Match tag's entry goes unless the op keeps that tag.
	old := ""
	if op.IfMatch != "" && (op.Remove || op.IfMatch != etag) {
		old = pubMember(aor, op.IfMatch)
		post = []goredis.Cmder{goredis.NewIntCmd(ctx, "zrem", ex, old)}
	}
	cmd := s.runScript(ctx, publishScript, []string{pubKey(aor)}, []any{op.Now.Unix(), op.IfMatch,
		op.NewETag, mode, exp, value, s.grace.Milliseconds(), op.MaxPublications}, pre, post)
	err := cmd.Err()
	switch {
	case err == nil:
	case goredis.HasErrorPrefix(err, replyNoMatch):
		s.unpublishIndex(ctx, ex, zadd != nil, z.Member.(string), old, err)
		return storage.Publication{}, fmt.Errorf("redis: %s: %s: %q: %w", step, aor, op.IfMatch, storage.ErrETagMismatch)
	case goredis.HasErrorPrefix(err, replyTooMany):
		s.unpublishIndex(ctx, ex, zadd != nil, z.Member.(string), old, err)
		return storage.Publication{}, fmt.Errorf("redis: %s: %s: %d live publications or more: %w", step, aor, op.MaxPublications, storage.ErrTooManyPublications)
	default:
		if old != "" {
			s.unknownOutcome(ctx, ex, old, op.Now)
		}
		return storage.Publication{}, unavailable(step, err)
	}
	if zadd != nil && zadd.Err() != nil {
		// The publication is stored (no error for the caller); try its entry once more.
		_ = s.c.ZAdd(context.WithoutCancel(ctx), ex, z).Err()
	}
	rep, err := cmd.StringSlice()
	if err != nil || len(rep) == 0 {
		return storage.Publication{}, fmt.Errorf("redis: %s: %s: unexpected script reply %v", step, aor, cmd.Val())
	}
	p, err := decodePublication(etag, rep[0])
	if err != nil {
		return storage.Publication{}, fmt.Errorf("redis: %s: %s: %w", step, aor, err)
	}
	return p, nil
}

// runScript sends pre, the EVALSHA of sc on keys with args, and post through the batcher, in
// that order, and returns the script's command: rerun alone with EVAL when Redis did not know
// the script (NOSCRIPT, e.g. after a restart).
func (s *Store) runScript(ctx context.Context, sc *goredis.Script, keys []string, args []any, pre, post []goredis.Cmder) *goredis.Cmd {
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, "evalsha", sc.Hash(), len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	cmd := goredis.NewCmd(ctx, append(a, args...)...)
	cmds := make([]goredis.Cmder, 0, len(pre)+1+len(post))
	cmds = append(append(append(cmds, pre...), cmd), post...)
	s.batch.do(ctx, cmds...)
	if isNoScript(cmd.Err()) {
		return sc.Eval(ctx, s.c, keys, args...)
	}
	return cmd
}

// fixIndex sets entries of the index shard ex back, best effort and even if the caller gives
// up (the client's timeouts still bound it), in one round trip: ZREM of rem ("": none), ZADD
// LT of each of lt (added if absent, never made later).
func (s *Store) fixIndex(ctx context.Context, ex, rem string, lt ...goredis.Z) {
	ictx := context.WithoutCancel(ctx)
	var cmds []goredis.Cmder
	if rem != "" {
		cmds = append(cmds, goredis.NewIntCmd(ictx, "zrem", ex, rem))
	}
	for _, z := range lt {
		cmds = append(cmds, goredis.NewIntCmd(ictx, "zadd", ex, "lt", z.Score, z.Member))
	}
	if len(cmds) > 0 {
		s.batch.do(ictx, cmds...)
	}
}

// unknownOutcome puts back the entry member of shard ex, which the batch of a failed op may
// have removed although its script did not run, as an early entry due at now: the sweep then
// finds the item live and puts the entry back at its expiry, or finds it gone and drops the
// entry. It runs in the background, so that an outage does not double the caller's wait.
func (s *Store) unknownOutcome(ctx context.Context, ex, member string, now time.Time) {
	go s.fixIndex(ctx, ex, "", goredis.Z{Score: float64(now.Unix()), Member: member})
}

// unpublishIndex sets the index entries of a Publish that publishScript refused (err) back:
// the early entry of the new tag (member, if added) is removed, or lowered to the stored
// expiry when that tag is stored; the If-Match tag's entry (old; "": not removed) is put back
// when that tag is stored (it had expired, or did not parse: the sweep reports or deletes
// it). The refusal reads "<reply> <If-Match tag's expiry> <new tag's expiry>", "-" for a tag
// not stored.
func (s *Store) unpublishIndex(ctx context.Context, ex string, added bool, member, old string, err error) {
	f := strings.Fields(err.Error())
	stored := func(i int) (float64, bool) {
		if len(f) != 3 {
			return 0, false
		}
		v, err := strconv.ParseFloat(f[i], 64)
		return v, err == nil
	}
	rem, lt := "", []goredis.Z(nil)
	if added {
		if e, ok := stored(2); ok {
			lt = append(lt, goredis.Z{Score: e, Member: member})
		} else {
			rem = member
		}
	}
	if e, ok := stored(1); ok && old != "" {
		lt = append(lt, goredis.Z{Score: e, Member: old})
	}
	s.fixIndex(ctx, ex, rem, lt...)
}

// Publications returns aor's publications live at now, oldest UpdatedAt first (ties by
// ETag); nil when there are none (one HGETALL).
func (s *Store) Publications(ctx context.Context, aor string, now time.Time) ([]storage.Publication, error) {
	return liveValues(ctx, s, "publications", aor, pubKey(aor), now, decodePublication,
		func(p *storage.Publication) time.Time { return p.ExpiresAt }, storage.ComparePublications)
}

// hgetAll reads the hash key through the batcher.
func (s *Store) hgetAll(ctx context.Context, key string) (map[string]string, error) {
	cmd := goredis.NewMapStringStringCmd(ctx, "hgetall", key)
	s.batch.do(ctx, cmd)
	return cmd.Result()
}

// liveValues reads the hash key of aor (one HGETALL), decodes every field's value, and
// returns those whose expiry is after now, sorted by order; nil when there are none. A value
// that does not decode is an error.
func liveValues[T any](ctx context.Context, s *Store, step, aor, key string, now time.Time,
	decode func(field, v string) (T, error), expiry func(*T) time.Time, order func(a, b T) int) ([]T, error) {
	vals, err := s.hgetAll(ctx, key)
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
	step:   "expire publications",
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
	return pubSweep.sweep(ctx, s, now, limit)
}

// PutSubscription stores sub whole under sub.AOR and sub.ID; with minCSeq > 0 only if no
// subscription with that ID is stored (expired or not) whose RemoteCSeq is minCSeq or more,
// else it fails with storage.ErrStale and writes nothing: the ZADD of its index entry and
// putSubscriptionScript, one round trip.
func (s *Store) PutSubscription(ctx context.Context, sub storage.Subscription, minCSeq uint32) error {
	const step = "put subscription"
	if err := sub.Validate(); err != nil {
		return fmt.Errorf("redis: %s: %s: %w", step, sub.AOR, err)
	}
	js, err := encodeSubscription(&sub)
	if err != nil {
		return fmt.Errorf("redis: %s: %s: %w", step, sub.AOR, err)
	}
	exp := sub.ExpiresAt.Unix()
	ex, z := expKey(sub.AOR), goredis.Z{Score: float64(exp), Member: subMember(sub.AOR, sub.ID)}
	zadd := goredis.NewIntCmd(ctx, "zadd", ex, z.Score, z.Member)
	err = s.runScript(ctx, putSubscriptionScript, []string{subKey(sub.AOR)},
		[]any{sub.ID, minCSeq, js, exp, s.grace.Milliseconds()}, []goredis.Cmder{zadd}, nil).Err()
	switch {
	case err == nil:
	case goredis.HasErrorPrefix(err, replyStale):
		// The reply names the stored subscription's expiry: its entry goes back to it.
		if f := strings.Fields(err.Error()); len(f) == 2 {
			if e, perr := strconv.ParseFloat(f[1], 64); perr == nil {
				s.fixIndex(ctx, ex, "", goredis.Z{Score: e, Member: z.Member})
			}
		}
		return fmt.Errorf("redis: %s: %s: %q: CSeq not below %d: %w", step, sub.AOR, sub.ID, minCSeq, storage.ErrStale)
	default:
		return unavailable(step, err) // the early entry, if any, is harmless
	}
	if zadd.Err() != nil {
		_ = s.c.ZAdd(context.WithoutCancel(ctx), ex, z).Err() // once more; then the key's TTL still ends it
	}
	return nil
}

// Subscription returns aor's subscription id live at now, or storage.ErrNotFound (one HGET,
// through the batcher as every read here).
func (s *Store) Subscription(ctx context.Context, aor, id string, now time.Time) (storage.Subscription, error) {
	const step = "subscription"
	cmd := goredis.NewStringCmd(ctx, "hget", subKey(aor), id)
	s.batch.do(ctx, cmd)
	js, err := cmd.Result()
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
		func(sub *storage.Subscription) time.Time { return sub.ExpiresAt }, storage.CompareSubscriptions)
}

// ClaimSubscription makes node the owner of aor's subscription id if its owner is expect or
// node, and raises its NotifyCSeq by block (presence.SubscriptionStore): claimSubscriptionScript, one
// round trip, atomic however many nodes claim at once.
func (s *Store) ClaimSubscription(ctx context.Context, aor, id, expect, node string, block uint32, now time.Time) (storage.Subscription, error) {
	const step = "claim subscription"
	if strings.ContainsAny(node, `"\%`) {
		return storage.Subscription{}, fmt.Errorf("redis: %s: node %q: not a node id", step, node)
	}
	rep, err := s.runScript(ctx, claimSubscriptionScript, []string{subKey(aor)},
		[]any{id, now.Unix(), expect, node, block}, nil, nil).StringSlice()
	if err != nil {
		return storage.Subscription{}, unavailable(step, err)
	}
	switch {
	case len(rep) == 2 && rep[0] == "claimed":
		sub, err := decodeSubscription(rep[1])
		if err != nil {
			return storage.Subscription{}, fmt.Errorf("redis: %s: %s: %q: %w", step, aor, id, err)
		}
		return sub, nil
	case len(rep) == 2 && rep[0] == "stale":
		return storage.Subscription{}, fmt.Errorf("redis: %s: %s: %q is owned by %q, not %q: %w", step, aor, id, rep[1], expect, storage.ErrStale)
	}
	return storage.Subscription{}, fmt.Errorf("redis: %s: %s: %q: %w", step, aor, id, storage.ErrNotFound)
}

// DeleteSubscription removes aor's subscription id and returns it as it was, or fails with
// storage.ErrNotFound when it is not stored or has expired at now (an expired one is left for
// ExpireSubscriptions to report): deleteSubscriptionScript and the ZREM of its index entry,
// one round trip; an expired subscription's entry is put back with a second. A value that
// does not decode is deleted and reported as an error.
func (s *Store) DeleteSubscription(ctx context.Context, aor, id string, now time.Time) (storage.Subscription, error) {
	const step = "delete subscription"
	ex, m := expKey(aor), subMember(aor, id)
	rep, err := s.runScript(ctx, deleteSubscriptionScript, []string{subKey(aor)}, []any{id, now.Unix()},
		nil, []goredis.Cmder{goredis.NewIntCmd(ctx, "zrem", ex, m)}).StringSlice()
	if err != nil {
		s.unknownOutcome(ctx, ex, m, now)
		return storage.Subscription{}, unavailable(step, err)
	}
	if len(rep) != 2 || rep[0] == "expired" {
		if len(rep) == 2 {
			if e, err := strconv.ParseFloat(rep[1], 64); err == nil {
				s.fixIndex(ctx, ex, "", goredis.Z{Score: e, Member: m}) // for the sweep
			}
		}
		return storage.Subscription{}, fmt.Errorf("redis: %s: %s: %q: %w", step, aor, id, storage.ErrNotFound)
	}
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
	step:   "expire subscriptions",
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
	return subSweep.sweep(ctx, s, now, limit)
}

// SetRule sets aor's rule for watcher (one HSET).
func (s *Store) SetRule(ctx context.Context, aor, watcher, rule string) error {
	const step = "set rule"
	if err := storage.CheckRule(watcher, rule); err != nil {
		return fmt.Errorf("redis: %s: %s: %w", step, aor, err)
	}
	cmd := goredis.NewIntCmd(ctx, "hset", rulesKey(aor), watcher, rule)
	s.batch.do(ctx, cmd)
	if err := cmd.Err(); err != nil {
		return unavailable(step, err)
	}
	return nil
}

// DeleteRule removes aor's rule for watcher, or fails with storage.ErrNotFound (one HDEL).
func (s *Store) DeleteRule(ctx context.Context, aor, watcher string) error {
	const step = "delete rule"
	cmd := goredis.NewIntCmd(ctx, "hdel", rulesKey(aor), watcher)
	s.batch.do(ctx, cmd)
	n, err := cmd.Result()
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
	m, err := s.hgetAll(ctx, rulesKey(aor))
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
//	         stored value (for 'store'), grace (ms), max publications (0: no bound)
//
// It reads every publication's expiry: the expired ones, and values that do not parse, are
// dropped, unless the op is refused, in which case it writes nothing and replies the error
// "SIMPLED_NOMATCH <e1> <e2>" (if_match names no live publication) or "SIMPLED_TOOMANY <e1>
// <e2>" (a new publication, its etag not live, while max publications are live): e1 and e2
// are the stored expiries of if_match and of the new etag (0 for a value that does not
// parse, "-" when not stored), to set their index entries back by. A refresh re-stores
// if_match's value under the new etag with expires_at rewritten in place. It replies {value}:
// the value as now stored (for a removal: as it was); the index entries of the dropped
// publications are left to the sweep. On success the key's TTL is set to the latest expiry + grace (when none is
// left the key is gone with its last field).
var publishScript = goredis.NewScript(presenceLib + `
local now, ifm, etag, mode = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local exp, grace, maxn = tonumber(ARGV[5]), tonumber(ARGV[7]), tonumber(ARGV[8])
local live, drop, stored, n = {}, {}, {}, 0
local raw = redis.call('HGETALL', KEYS[1])
for i = 1, #raw, 2 do
  local e = expiry(raw[i + 1])
  stored[raw[i]] = e or 0
  if e and e > now then
    live[raw[i]] = {raw[i + 1], e}
    n = n + 1
  else
    drop[#drop + 1] = raw[i]
  end
end
local function refuse(reply)
  local function fmt(e) return e and string.format('%.0f', e) or '-' end
  return redis.error_reply(reply .. ' ' .. fmt(stored[ifm]) .. ' ' .. fmt(stored[etag]))
end
local old
if ifm ~= '' then
  old = live[ifm]
  if not old then return refuse('SIMPLED_NOMATCH') end
elseif maxn > 0 and not live[etag] and n >= maxn then
  return refuse('SIMPLED_TOOMANY')
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
return {v}
`)

// putSubscriptionScript implements PutSubscription.
//
//	KEYS[1]  sub:{aor}
//	ARGV     id, min_cseq, subscription JSON, expires_at (unix s), grace (ms)
//
// With min_cseq > 0 it replies the error "SIMPLED_STALE <expires_at>" (the stored one, 0 if it
// does not parse) and writes nothing when the stored subscription id has a remote_cseq of
// min_cseq or more (a stored value that does not decode is replaced). Else it stores the JSON, replies 1, and makes the key live at least until
// max(expires_at, Redis's now) + grace: PEXPIREAT, never shortening a TTL already set.
var putSubscriptionScript = goredis.NewScript(presenceLib + `
local minc = tonumber(ARGV[2])
if minc > 0 then
  local v = redis.call('HGET', KEYS[1], ARGV[1])
  if v then
    local ok, b = pcall(cjson.decode, v)
    if ok and type(b) == 'table' and type(b.remote_cseq) == 'number' and b.remote_cseq >= minc then
      return redis.error_reply('SIMPLED_STALE ' .. string.format('%.0f', expiry(v) or 0))
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

// claimSubscriptionScript implements ClaimSubscription.
//
//	KEYS[1]  sub:{aor}
//	ARGV     id, now (unix s), expected owner, new owner, block
//
// It replies {"claimed", JSON} with the subscription as now stored (node = the new owner,
// notify_cseq raised by block, at most 2^31-1), {"stale", owner} when the stored owner is
// neither the expected nor the new one, or {"none"} when the subscription is not stored, has
// expired or does not parse. The two fields are rewritten in the stored JSON itself (or
// appended to it), so it still starts with expires_at; a string value cannot hold the
// patterns matched, since Go escapes every quote inside one.
var claimSubscriptionScript = goredis.NewScript(presenceLib + `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {'none'} end
local e = expiry(v)
if not e or e <= tonumber(ARGV[2]) then return {'none'} end
local ok, b = pcall(cjson.decode, v)
if not ok or type(b) ~= 'table' then return {'none'} end
local owner = b.node
if type(owner) ~= 'string' then owner = '' end
if owner ~= ARGV[3] and owner ~= ARGV[4] then return {'stale', owner} end
local cs = tonumber(b.notify_cseq) or 0
local node = '"node":"' .. ARGV[4] .. '"'
local cseq = '"notify_cseq":' .. string.format('%d', math.min(cs + tonumber(ARGV[5]), 2147483647))
local n
v, n = string.gsub(v, ',"node":"[^"]*"', ',' .. node, 1)
if n == 0 then v = string.sub(v, 1, -2) .. ',' .. node .. '}' end
v, n = string.gsub(v, ',"notify_cseq":%d+', ',' .. cseq, 1)
if n == 0 then v = string.sub(v, 1, -2) .. ',' .. cseq .. '}' end
redis.call('HSET', KEYS[1], ARGV[1], v)
return {'claimed', v}
`)

// deleteSubscriptionScript deletes one subscription unless it has expired.
//
//	KEYS[1]  sub:{aor}
//	ARGV     id, now (unix s)
//
// It replies {"deleted", JSON} when it deleted a live subscription, {"corrupt", value} when
// it deleted a value that does not parse, {"expired", expires_at} when the subscription has
// expired (it is left for the sweep), or {"none"}.
var deleteSubscriptionScript = goredis.NewScript(presenceLib + `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {'none'} end
local e = expiry(v)
if e and e <= tonumber(ARGV[2]) then return {'expired', string.format('%.0f', e)} end
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
