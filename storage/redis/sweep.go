package redis

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/simpled/simpled/storage"

	goredis "github.com/redis/go-redis/v9"
)

// The expiry sweeps of every kind (bindings, offline messages, publications, subscriptions)
// share the exp:{n} index and one path, sweepKind.sweep: find the due entries of one kind,
// claim them, run the kind's script on the claimed ones, and put back the entries whose
// outcome is unknown or whose item turned out to be live. A kind supplies only its index
// prefix, its script, its keys and its decoder (bindingSweep, messageSweep, pubSweep,
// subSweep).

// candidate is an index entry found due by a sweep.
type candidate struct {
	shard  int
	member string
	score  float64
}

// dueCandidates returns up to want index entries whose member starts with prefix and whose
// score is at or before now, over all shards, earliest first, and whether more may remain:
// one pipeline of dueScript, one call per shard. The script skips the other kinds' entries
// inside Redis, so a backlog of one kind (its sweeper stopped) never hides another's due
// entries from a COUNT-limited read.
func (s *Store) dueCandidates(ctx context.Context, prefix string, now int64, want int) ([]candidate, bool, error) {
	cmds, err := s.runAll(ctx, dueScript, shards, func(i int) ([]string, []any) {
		return []string{expShard(i)}, []any{prefix, now, want}
	})
	if err != nil {
		return nil, false, err
	}
	var cands []candidate
	more := false
	for i, c := range cmds {
		vs, ok := c.Val().([]any)
		if !ok {
			return nil, false, fmt.Errorf("due entries: unexpected script reply %T", c.Val())
		}
		if len(vs)/2 >= want {
			more = true
		}
		for j := 0; j+1 < len(vs); j += 2 {
			m, _ := vs[j].(string)
			sc, _ := vs[j+1].(string)
			score, err := strconv.ParseFloat(sc, 64)
			if err != nil {
				continue
			}
			cands = append(cands, candidate{shard: i, member: m, score: score})
		}
	}
	slices.SortFunc(cands, func(a, b candidate) int {
		if c := cmp.Compare(a.score, b.score); c != 0 {
			return c
		}
		return cmp.Compare(a.member, b.member)
	})
	if len(cands) > want {
		cands, more = cands[:want], true
	}
	return cands, more, nil
}

// claim runs claimScript for every candidate in one pipeline and returns the ones this call
// removed from the index: of several sweepers exactly one claims an entry. A candidate whose
// claim has an unknown outcome is added to readd (shard → entries), to be put back; the
// error is the first one met.
func (s *Store) claim(ctx context.Context, cands []candidate, now int64, readd map[int][]goredis.Z) ([]candidate, error) {
	claims, err := s.runAll(ctx, claimScript, len(cands), func(i int) ([]string, []any) {
		return []string{expShard(cands[i].shard)}, []any{cands[i].member, now}
	})
	var claimed []candidate
	for i, c := range claims {
		switch {
		case c.Err() != nil:
			// Unknown outcome: if the ZREM ran, the entry must come back for a later sweep.
			readd[cands[i].shard] = append(readd[cands[i].shard], goredis.Z{Score: cands[i].score, Member: cands[i].member})
		case c.Val() == int64(1):
			claimed = append(claimed, cands[i])
		}
	}
	return claimed, err
}

// putBack adds the entries of readd (shard → entries) to the index in one pipeline, lowering
// an entry that is there already (ZADD LT: never later than the truth, whatever ran
// concurrently).
func (s *Store) putBack(ctx context.Context, readd map[int][]goredis.Z) error {
	if len(readd) == 0 {
		return nil
	}
	p := s.c.Pipeline()
	for sh, zs := range readd {
		p.ZAddLT(ctx, expShard(sh), zs...)
	}
	_, err := p.Exec(ctx)
	return err
}

// runAll runs script n times in one pipeline (EVALSHA), reruns the ones Redis did not know
// with EVAL, and returns each call's command and the first error.
func (s *Store) runAll(ctx context.Context, sc *goredis.Script, n int, call func(i int) ([]string, []any)) ([]*goredis.Cmd, error) {
	if n == 0 {
		return nil, nil
	}
	cmds := make([]*goredis.Cmd, n)
	pipe := s.c.Pipeline()
	for i := range n {
		k, a := call(i)
		cmds[i] = sc.EvalSha(ctx, pipe, k, a...)
	}
	_, _ = pipe.Exec(ctx)
	var retry []int
	for i, c := range cmds {
		if isNoScript(c.Err()) {
			retry = append(retry, i)
		}
	}
	if len(retry) > 0 {
		pipe := s.c.Pipeline()
		for _, i := range retry {
			k, a := call(i)
			cmds[i] = sc.Eval(ctx, pipe, k, a...)
		}
		_, _ = pipe.Exec(ctx)
	}
	for _, c := range cmds {
		if c.Err() != nil {
			return cmds, c.Err()
		}
	}
	return cmds, nil
}

// expireReply reads the reply of the expiry script for a claimed index entry c. On
// {"expired", value} the item was removed and its stored value is returned with true. On
// {"live", expires-at} it was refreshed since: the entry goes back at its new expiry. On an
// error or an unknown reply the outcome is unknown: the entry goes back as it was, for a later
// sweep to look again. Any other reply (the item is gone already) drops the entry.
func expireReply(r *goredis.Cmd, c candidate, readd map[int][]goredis.Z) (string, bool) {
	rep, ok := r.Val().([]any)
	if r.Err() != nil || !ok || len(rep) == 0 {
		readd[c.shard] = append(readd[c.shard], goredis.Z{Score: c.score, Member: c.member})
		return "", false
	}
	var v string
	if len(rep) > 1 {
		v, _ = rep[1].(string)
	}
	switch rep[0] {
	case "expired":
		return v, true
	case "live":
		if exp, err := strconv.ParseInt(v, 10, 64); err == nil {
			readd[c.shard] = append(readd[c.shard], goredis.Z{Score: float64(exp), Member: c.member})
		}
	}
	return "", false
}

// sweepKind is one kind's own part of an expiry sweep: the step named in errors, its index
// prefix, the script that deletes a claimed item if it is due (KEYS from keys(aor), ARGV the
// item's id and now; it replies as expireReply reads), and how a removed item's stored value
// decodes.
type sweepKind[T any] struct {
	step   string
	prefix string
	script *goredis.Script
	keys   func(aor string) []string
	decode func(aor, id, v string) (T, error)
}

// sweep removes at most limit items of the kind that expired at now, over all AORs, and
// returns them, each by exactly one call whichever node makes it: rounds until limit items
// were removed or none are left. Items removed before an error are returned without it (the
// next call reports it), so nothing removed is ever dropped.
func (k *sweepKind[T]) sweep(ctx context.Context, s *Store, now time.Time, limit int) ([]T, error) {
	if err := storage.CheckLimit(limit); err != nil {
		return nil, fmt.Errorf("redis: %s: %w", k.step, err)
	}
	n := now.Unix()
	var out []T
	for len(out) < limit {
		got, more, err := k.round(ctx, s, n, limit-len(out))
		out = append(out, got...)
		if err != nil {
			if len(out) > 0 {
				return out, nil
			}
			return nil, unavailable(k.step, err)
		}
		if !more {
			break
		}
	}
	return out, nil
}

// round examines up to want due index entries of the kind and returns the items it removed,
// and whether more due entries may remain: the due entries, their claim, the kind's script
// for the claimed ones, and the entries to put back.
func (k *sweepKind[T]) round(ctx context.Context, s *Store, now int64, want int) ([]T, bool, error) {
	cands, more, err := s.dueCandidates(ctx, k.prefix, now, want)
	if err != nil || len(cands) == 0 {
		return nil, false, err
	}
	readd := map[int][]goredis.Z{}
	claimed, err := s.claim(ctx, cands, now, readd)

	type target struct {
		aor, id string
		c       candidate
	}
	targets := make([]target, 0, len(claimed))
	for _, c := range claimed {
		aor, id, ok := parseIndexMember(k.prefix, c.member)
		if !ok {
			continue // malformed: it is gone from the index now
		}
		targets = append(targets, target{aor, id, c})
	}
	results, runErr := s.runAll(ctx, k.script, len(targets), func(i int) ([]string, []any) {
		return k.keys(targets[i].aor), []any{targets[i].id, now}
	})
	if runErr == nil {
		runErr = err
	}
	var out []T
	for i, r := range results {
		t := targets[i]
		v, expired := expireReply(r, t.c, readd)
		if !expired {
			continue
		}
		x, err := k.decode(t.aor, t.id, v)
		if err != nil {
			continue // removed; it cannot be reported
		}
		out = append(out, x)
	}
	if err := s.putBack(ctx, readd); err != nil && runErr == nil {
		runErr = err
	}
	return out, more, runErr
}
