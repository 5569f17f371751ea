package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/simpled/simpled/storage"

	goredis "github.com/redis/go-redis/v9"
)

// decodeCache remembers decoded values by their stored text. A binding is read far more
// often (every MESSAGE and call to its user) than it is written, and encoding/json was a
// tenth of a relayed MESSAGE's CPU; a presentity's subscriptions are all read for every change
// of its state. The key is the exact stored text, so a changed value is a new entry; the cache
// is emptied when it reaches decodeCacheSize entries. Each caller gets its own copy of the
// value's slices (clone).
type decodeCache[T any] struct {
	m     sync.Map // stored JSON → T
	n     atomic.Int64
	clone func(T) T
}

// decodeCacheSize bounds each cache (about 40 MB of typical bindings).
const decodeCacheSize = 1 << 16

func (c *decodeCache[T]) get(js string, decode func(string) (T, error)) (T, error) {
	if v, ok := c.m.Load(js); ok {
		return c.clone(v.(T)), nil
	}
	x, err := decode(js)
	if err != nil {
		return x, err
	}
	if c.n.Add(1) > decodeCacheSize {
		c.m.Clear()
		c.n.Store(1)
	}
	c.m.Store(js, x)
	return c.clone(x), nil
}

func flag(b bool) int {
	if b {
		return 1
	}
	return 0
}

// UpdateBindings applies one REGISTER to aor atomically, with the semantics of
// storage.BindingUpdate, in one round trip. On an error nothing changed (in the bindings; the
// sweep index may hold harmless early entries).
func (s *Store) UpdateBindings(ctx context.Context, aor string, u storage.BindingUpdate) (storage.BindingResult, error) {
	const step = "update bindings"
	now := u.Now.Unix()
	keys := []string{regKey(aor)}
	args := make([]any, 0, 7+5*len(u.Changes))
	args = append(args, now, flag(u.RemoveAll), asJSONString(u.CallID), u.CSeq, u.MaxBindings, flag(u.EvictOldest), s.grace.Milliseconds())

	if err := u.Validate(); err != nil {
		return storage.BindingResult{}, fmt.Errorf("redis: %s: %w", step, err)
	}
	ex := expKey(aor)
	var zs []goredis.Z // index entries for the bindings this update stores
	// sent are the changes' bindings and the JSON this update stores, by change number: the
	// script's reply names them by that number, and they need no decoding.
	sent := make([]sentBinding, 0, len(u.Changes))
	// With RemoveAll the changes play no part (rule 2).
	if !u.RemoveAll {
		for i := range u.Changes {
			b := &u.Changes[i].Binding
			js, err := encodeBinding(b)
			if err != nil {
				return storage.BindingResult{}, fmt.Errorf("redis: %s: change %d: %w", step, i, err)
			}
			exp := b.ExpiresAt.Unix()
			args = append(args, b.Key, asJSONString(b.CallID), b.CSeq, exp, js)
			sent = append(sent, sentBinding{js: js, b: b})
			if exp > now {
				zs = append(zs, goredis.Z{Score: float64(exp), Member: member(aor, b.Key)})
			}
		}
	}

	var zadd *goredis.IntCmd
	cmds := make([]goredis.Cmder, 0, 2)
	if len(zs) > 0 {
		zargs := make([]any, 0, 2+2*len(zs))
		zargs = append(zargs, "zadd", ex)
		for _, z := range zs {
			zargs = append(zargs, z.Score, z.Member)
		}
		zadd = goredis.NewIntCmd(ctx, zargs...)
		cmds = append(cmds, zadd)
	}
	evalArgs := make([]any, 0, 3+len(keys)+len(args))
	evalArgs = append(evalArgs, "evalsha", updateScript.Hash(), len(keys))
	for _, k := range keys {
		evalArgs = append(evalArgs, k)
	}
	evalArgs = append(evalArgs, args...)
	cmd := goredis.NewCmd(ctx, evalArgs...)
	// The mailbox, read after the script in the same round trip (same slot: {aor}), spares
	// the offline delivery its own look-up after every registration.
	mail := goredis.NewIntCmd(ctx, "exists", msgKey(aor))
	cmds = append(cmds, cmd, mail)
	s.batch.do(ctx, cmds...) // shared with concurrent updates: one round trip for many
	err := cmd.Err()
	if isNoScript(err) {
		cmd = updateScript.Eval(ctx, s.c, keys, args...)
		err = cmd.Err()
	}
	switch {
	case err == nil:
	case goredis.HasErrorPrefix(err, replyStale):
		s.repairIndex(ctx, aor, zs)
		return storage.BindingResult{}, fmt.Errorf("redis: %s: %s: %w", step, aor, storage.ErrStale)
	case goredis.HasErrorPrefix(err, replyTooMany):
		s.repairIndex(ctx, aor, zs)
		return storage.BindingResult{}, fmt.Errorf("redis: %s: %s: more than %d bindings: %w", step, aor, u.MaxBindings, storage.ErrTooManyBindings)
	case goredis.HasErrorPrefix(err, replyCorrupt):
		s.repairIndex(ctx, aor, zs)
		return storage.BindingResult{}, fmt.Errorf("redis: %s: %s: %w", step, aor, err)
	default:
		return storage.BindingResult{}, unavailable(step, err)
	}
	if zadd != nil && zadd.Err() != nil {
		// The bindings are written (so this is no error for the caller) but their index
		// entries may be missing; try once more. If that fails too, the entries come back
		// with the next refresh, and the key's TTL still ends the AOR.
		_ = s.c.ZAdd(ctx, ex, zs...).Err()
	}
	res, err := decodeUpdate(cmd.Val(), s.updated(sent))
	if err != nil {
		return storage.BindingResult{}, fmt.Errorf("redis: %s: %s: %w", step, aor, err)
	}
	if n, err := mail.Result(); err == nil {
		res.Mailbox = storage.MailboxOf(n > 0)
	}
	return res, nil
}

// repairIndex lowers the index entries a refused update pipelined back to the stored
// expiries (ZADD LT: never later than the truth, whatever ran concurrently). Best effort: an
// entry left too late only delays that binding's expiry event, and the key TTL still holds.
func (s *Store) repairIndex(ctx context.Context, aor string, zs []goredis.Z) {
	if len(zs) == 0 {
		return
	}
	fields := make([]string, len(zs))
	for i, z := range zs {
		_, fields[i], _ = parseMember(z.Member.(string))
	}
	vals, err := s.c.HMGet(ctx, regKey(aor), fields...).Result()
	if err != nil {
		return
	}
	var fix []goredis.Z
	for i, v := range vals {
		js, ok := v.(string)
		if !ok {
			continue // no binding: the sweep drops the entry
		}
		b, err := decodeBinding(js)
		if err != nil {
			continue
		}
		fix = append(fix, goredis.Z{Score: float64(b.ExpiresAt.Unix()), Member: zs[i].Member})
	}
	if len(fix) > 0 {
		_ = s.c.ZAddLT(ctx, expKey(aor), fix...).Err()
	}
}

// updated decodes one binding of updateScript's reply: its JSON, or the number of one of the
// update's changes (sent), which needs no decoding at all.
func (s *Store) updated(sent []sentBinding) func(elem any) (storage.Binding, error) {
	return func(elem any) (storage.Binding, error) {
		switch v := elem.(type) {
		case int64: // one of this update's changes, by number: its JSON was sent, not returned
			if v < 0 || v >= int64(len(sent)) {
				return storage.Binding{}, fmt.Errorf("script reply: change %d of %d", v, len(sent))
			}
			if b, ok := asStored(sent[v].b); ok {
				return b, nil
			}
			return s.decoded.get(sent[v].js, decodeBinding)
		case string:
			return s.decoded.get(v, decodeBinding)
		}
		return storage.Binding{}, fmt.Errorf("unexpected script reply element %T", elem)
	}
}

// sentBinding is a binding an update stores, and its stored JSON.
type sentBinding struct {
	js string
	b  *storage.Binding
}

// asStored is b as decodeBinding returns it after a store (times to the second, in UTC; an
// empty Path nil), without encoding and decoding it; false when the JSON would change it
// (a string that is not valid UTF-8).
func asStored(b *storage.Binding) (storage.Binding, bool) {
	for _, s := range [...]string{b.Key, b.Contact, b.URI, b.CallID, b.InstanceID, b.Received, b.Transport, b.Flow, b.Node, b.UserAgent} {
		if !utf8.ValidString(s) {
			return storage.Binding{}, false
		}
	}
	for _, s := range b.Path {
		if !utf8.ValidString(s) {
			return storage.Binding{}, false
		}
	}
	c := *b
	c.ExpiresAt, c.UpdatedAt = fromUnix(b.ExpiresAt.Unix()), fromUnix(b.UpdatedAt.Unix())
	c.Path = nil
	if len(b.Path) > 0 {
		c.Path = slices.Clone(b.Path)
	}
	return c, true
}

// decodeUpdate turns updateScript's reply into a BindingResult, every list ordered by Key;
// decode turns one element of a list (a binding's JSON, or the number of one of the update's
// changes) into the binding.
func decodeUpdate(v any, decode func(elem any) (storage.Binding, error)) (storage.BindingResult, error) {
	parts, ok := v.([]any)
	if !ok || len(parts) != 6 {
		return storage.BindingResult{}, fmt.Errorf("unexpected script reply %T", v)
	}
	lists := make([][]storage.Binding, 4)
	for i := range 4 {
		l, err := decodeList(parts[i], decode)
		if err != nil {
			return storage.BindingResult{}, err
		}
		lists[i] = l
	}
	res := storage.BindingResult{Bindings: lists[0], Removed: lists[1], Expired: lists[2], Evicted: lists[3]}
	pick := func(p any) ([]storage.Binding, error) {
		ks, ok := p.([]any)
		if !ok {
			return nil, fmt.Errorf("unexpected script reply %T", p)
		}
		var out []storage.Binding
		for _, k := range ks {
			i := slices.IndexFunc(res.Bindings, func(b storage.Binding) bool { return b.Key == k })
			if i < 0 {
				return nil, fmt.Errorf("script reply: key %v not among the bindings", k)
			}
			b := res.Bindings[i]
			b.Path = slices.Clone(b.Path)
			out = append(out, b)
		}
		slices.SortFunc(out, storage.CompareBindings)
		return out, nil
	}
	var err error
	if res.Added, err = pick(parts[4]); err != nil {
		return storage.BindingResult{}, err
	}
	if res.Refreshed, err = pick(parts[5]); err != nil {
		return storage.BindingResult{}, err
	}
	if res.Bindings == nil {
		res.Bindings = []storage.Binding{}
	}
	return res, nil
}

// jsonElem is decode for reply elements that must be JSON text.
func jsonElem(decode func(js string) (storage.Binding, error)) func(elem any) (storage.Binding, error) {
	return func(elem any) (storage.Binding, error) {
		js, ok := elem.(string)
		if !ok {
			return storage.Binding{}, fmt.Errorf("unexpected script reply element %T", elem)
		}
		return decode(js)
	}
}

func decodeList(p any, decode func(elem any) (storage.Binding, error)) ([]storage.Binding, error) {
	vs, ok := p.([]any)
	if !ok {
		return nil, fmt.Errorf("unexpected script reply %T", p)
	}
	var out []storage.Binding
	for _, v := range vs {
		b, err := decode(v)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	slices.SortFunc(out, storage.CompareBindings)
	return out, nil
}

// Bindings returns aor's bindings live at now, ordered by Key (one HGETALL).
func (s *Store) Bindings(ctx context.Context, aor string, now time.Time) ([]storage.Binding, error) {
	const step = "bindings"
	// Through the batcher: every MESSAGE and call looks its target up, and concurrent
	// look-ups then share one round trip (and one read and write on each side).
	cmd := goredis.NewMapStringStringCmd(ctx, "hgetall", regKey(aor))
	s.batch.do(ctx, cmd)
	m, err := cmd.Result()
	if err != nil {
		return nil, unavailable(step, err)
	}
	n := now.Unix()
	out := make([]storage.Binding, 0, len(m))
	for k, js := range m {
		b, err := s.decoded.get(js, decodeBinding)
		if err != nil {
			return nil, fmt.Errorf("redis: %s: %s: %q: %w", step, aor, k, err)
		}
		if b.ExpiresAt.Unix() > n {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, storage.CompareBindings)
	return out, nil
}

// RemoveBindings removes every binding of aor, expired or not, and returns them ordered by
// Key (one MULTI/EXEC of HGETALL and DEL). Their index entries are left to the sweep, which
// finds nothing and drops them. Values that do not decode are removed too and reported as an
// error after the removal.
func (s *Store) RemoveBindings(ctx context.Context, aor string) ([]storage.Binding, error) {
	const step = "remove bindings"
	var get *goredis.MapStringStringCmd
	_, err := s.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		get = p.HGetAll(ctx, regKey(aor))
		p.Del(ctx, regKey(aor))
		return nil
	})
	if err != nil {
		return nil, unavailable(step, err)
	}
	out := make([]storage.Binding, 0, len(get.Val()))
	var bad []error
	for k, js := range get.Val() {
		b, err := decodeBinding(js)
		if err != nil {
			bad = append(bad, fmt.Errorf("%q: %w", k, err))
			continue
		}
		out = append(out, b)
	}
	slices.SortFunc(out, storage.CompareBindings)
	if len(bad) > 0 {
		return out, fmt.Errorf("redis: %s: %s: removed %d values that did not decode: %w", step, aor, len(bad), errors.Join(bad...))
	}
	return out, nil
}

// RemoveFlowBindings removes aor's bindings live at now that are bound to flow, atomically
// (one script on reg:{aor}), and returns them ordered by Key. Expired ones stay for the sweep.
func (s *Store) RemoveFlowBindings(ctx context.Context, aor, flow string, now time.Time) ([]storage.Binding, error) {
	const step = "remove flow bindings"
	if err := storage.CheckFlow(flow); err != nil {
		return nil, fmt.Errorf("redis: %s: %w", step, err)
	}
	// The stored flow went through encoding/json: compare with the same text.
	v, err := flowScript.Run(ctx, s.c, []string{regKey(aor)}, now.Unix(), asJSONString(flow)).Result()
	if err != nil {
		return nil, unavailable(step, err)
	}
	out, err := decodeList(v, jsonElem(decodeBinding))
	if err != nil {
		return nil, fmt.Errorf("redis: %s: %s: %w", step, aor, err)
	}
	return out, nil
}

// bindingSweep is the bindings' part of the shared expiry sweep (sweep.go).
var bindingSweep = sweepKind[storage.ExpiredBinding]{
	step:   "sweep expired",
	prefix: regPrefix,
	script: expireScript,
	keys:   func(aor string) []string { return []string{regKey(aor)} },
	decode: func(aor, _, js string) (storage.ExpiredBinding, error) {
		b, err := decodeBinding(js)
		return storage.ExpiredBinding{AOR: aor, Binding: b}, err
	},
}

// SweepExpired removes at most limit bindings that expired at now, earliest first, over all
// AORs, and returns them; each expired binding is returned by exactly one call, whichever
// node makes it. It returns fewer than limit only when the index holds no more due entries.
// When Redis fails after some bindings were removed, those are returned without an error (the
// next call reports the error); they are never dropped.
func (s *Store) SweepExpired(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredBinding, error) {
	return bindingSweep.sweep(ctx, s, now, limit)
}
