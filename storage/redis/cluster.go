package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/storage"

	goredis "github.com/redis/go-redis/v9"
)

// The nodes of one deployment (package cluster's Store): membership records with leases, and
// one inbox stream per node for the events the others send it.
//
//	nodes            hash    node id → "<expires_at ms> <heartbeat ms> <storage.NodeRecord
//	                         JSON>", both times by Redis's clock; a record whose lease ended
//	                         is dropped by the next heartbeat of any node. TTL: the keep
//	                         time of the last heartbeat, so the key goes with the last node.
//	inbox:{<node>}   stream  entries f=<sending node> e=<events as the cluster bus encodes
//	                         them>, MAXLEN ~ bounded; created by its node's heartbeat, which
//	                         also refreshes its TTL, and never by a sender (XADD NOMKSTREAM),
//	                         so the inbox of a node that stopped vanishes with its TTL.
//
// Every command touches one key, so all of it works on Redis Cluster as on one server.

const nodesKey = "nodes"

func inboxKey(node string) string { return "inbox:{" + node + "}" }

// heartbeatScript writes one node's record with its lease, drops the records whose lease
// ended, and returns Redis's clock (ms) followed by every live record as stored.
//
//	KEYS[1]  nodes
//	ARGV     node id, record JSON, lease (ms), key TTL (ms)
var heartbeatScript = goredis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], (now + tonumber(ARGV[3])) .. ' ' .. now .. ' ' .. ARGV[2])
local out = {now}
local raw = redis.call('HGETALL', KEYS[1])
for i = 1, #raw, 2 do
  local exp = tonumber(string.match(raw[i + 1], '^(%d+) '))
  if exp == nil or exp <= now then
    redis.call('HDEL', KEYS[1], raw[i])
  else
    out[#out + 1] = raw[i + 1]
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return out
`)

// keepInboxScript creates a node's inbox when it is missing (with one empty entry, which
// readers skip) and sets its TTL.
//
//	KEYS[1]  inbox:{node}
//	ARGV     TTL (ms)
var keepInboxScript = goredis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XADD', KEYS[1], '*', 'f', '', 'e', '')
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`)

// Heartbeat writes rec as its node's membership record with a lease of lease, keeps the
// node's inbox (creating it when missing) and the nodes key for keep, and returns every node
// whose lease runs, rec's included, and Redis's clock at the write. It is one round trip.
func (s *Store) Heartbeat(ctx context.Context, rec storage.NodeRecord, lease, keep time.Duration) ([]storage.NodeRecord, time.Time, error) {
	if rec.ID == "" || lease <= 0 || keep < lease {
		return nil, time.Time{}, errors.New("redis: heartbeat: want a node id, a lease and keep >= lease")
	}
	js, err := json.Marshal(rec)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("redis: heartbeat: %w", err)
	}
	hb := func(p goredis.Pipeliner, eval bool) *goredis.Cmd {
		keys, args := []string{nodesKey}, []any{rec.ID, js, lease.Milliseconds(), keep.Milliseconds()}
		if eval {
			return heartbeatScript.Eval(ctx, p, keys, args...)
		}
		return heartbeatScript.EvalSha(ctx, p, keys, args...)
	}
	inbox := func(p goredis.Pipeliner, eval bool) *goredis.Cmd {
		keys := []string{inboxKey(rec.ID)}
		if eval {
			return keepInboxScript.Eval(ctx, p, keys, keep.Milliseconds())
		}
		return keepInboxScript.EvalSha(ctx, p, keys, keep.Milliseconds())
	}
	p := s.c.Pipeline()
	hcmd, icmd := hb(p, false), inbox(p, false)
	_, _ = p.Exec(ctx)
	if isNoScript(hcmd.Err()) || isNoScript(icmd.Err()) {
		p := s.c.Pipeline()
		hcmd, icmd = hb(p, true), inbox(p, true)
		_, _ = p.Exec(ctx)
	}
	if err := cmp2(hcmd.Err(), icmd.Err()); err != nil {
		return nil, time.Time{}, unavailable("heartbeat", err)
	}
	return decodeNodes(hcmd.Val())
}

// cmp2 returns the first non-nil error.
func cmp2(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// decodeNodes reads the heartbeat script's reply. A record that does not decode is left out.
func decodeNodes(v any) ([]storage.NodeRecord, time.Time, error) {
	rep, ok := v.([]any)
	if !ok || len(rep) == 0 {
		return nil, time.Time{}, fmt.Errorf("redis: heartbeat: unexpected script reply %v", v)
	}
	nowMS, ok := rep[0].(int64)
	if !ok {
		return nil, time.Time{}, fmt.Errorf("redis: heartbeat: unexpected clock %v", rep[0])
	}
	out := make([]storage.NodeRecord, 0, len(rep)-1)
	for _, r := range rep[1:] {
		s, _ := r.(string)
		if rec, ok := decodeNode(s); ok {
			out = append(out, rec)
		}
	}
	return out, time.UnixMilli(nowMS).UTC(), nil
}

// decodeNode reads one stored record: "<expires_at ms> <heartbeat ms> <JSON>".
func decodeNode(s string) (storage.NodeRecord, bool) {
	exp, rest, ok1 := strings.Cut(s, " ")
	hb, js, ok2 := strings.Cut(rest, " ")
	e, err1 := strconv.ParseInt(exp, 10, 64)
	h, err2 := strconv.ParseInt(hb, 10, 64)
	var rec storage.NodeRecord
	if !ok1 || !ok2 || err1 != nil || err2 != nil || json.Unmarshal([]byte(js), &rec) != nil || rec.ID == "" {
		return storage.NodeRecord{}, false
	}
	rec.ExpiresAt, rec.Heartbeat = time.UnixMilli(e).UTC(), time.UnixMilli(h).UTC()
	return rec, true
}

// LeaveCluster removes node's membership record: the others see it gone at their next
// heartbeat. Its inbox is left to its TTL (a sender that still thinks it alive appends
// there rather than re-creating a key without TTL).
func (s *Store) LeaveCluster(ctx context.Context, node string) error {
	if err := s.c.HDel(ctx, nodesKey, node).Err(); err != nil {
		return unavailable("leave cluster", err)
	}
	return nil
}

// AppendInbox appends each entry to its node's inbox, trimmed to about maxLen entries, in
// one round trip. An inbox that does not exist (its node stopped, or never joined) is not
// created: that entry's ok is false. err is set when the round trip failed; ok then tells
// the entries that were appended nonetheless.
func (s *Store) AppendInbox(ctx context.Context, entries []storage.InboxAppend, maxLen int64) (ok []bool, err error) {
	if len(entries) == 0 {
		return nil, nil
	}
	p := s.c.Pipeline()
	cmds := make([]*goredis.StringCmd, len(entries))
	for i, e := range entries {
		cmds[i] = p.XAdd(ctx, &goredis.XAddArgs{Stream: inboxKey(e.Node), NoMkStream: true, MaxLen: maxLen,
			Approx: true, ID: "*", Values: []any{"f", e.From, "e", e.Data}})
	}
	_, _ = p.Exec(ctx)
	ok = make([]bool, len(entries))
	for i, c := range cmds {
		switch cerr := c.Err(); {
		case cerr == nil:
			ok[i] = true
		case errors.Is(cerr, goredis.Nil):
		default:
			err = cmp2(err, cerr)
		}
	}
	if err != nil {
		return ok, unavailable("append inbox", err)
	}
	return ok, nil
}

// InboxTail returns the ID of the last entry of node's inbox, "0-0" when it is empty or
// missing: reading after it returns what is appended from now on.
func (s *Store) InboxTail(ctx context.Context, node string) (string, error) {
	msgs, err := s.c.XRevRangeN(ctx, inboxKey(node), "+", "-", 1).Result()
	if err != nil {
		return "", unavailable("inbox tail", err)
	}
	if len(msgs) == 0 {
		return "0-0", nil
	}
	return msgs[0].ID, nil
}

// ReadInbox returns up to count entries of node's inbox after the entry after, oldest
// first, waiting up to block (at least a millisecond) for the first when there is none.
// Nothing within block is no entries and no error.
func (s *Store) ReadInbox(ctx context.Context, node, after string, count int, block time.Duration) ([]storage.InboxEntry, error) {
	block = max(block, time.Millisecond)
	res, err := s.c.XRead(ctx, &goredis.XReadArgs{Streams: []string{inboxKey(node), after}, Count: int64(count), Block: block}).Result()
	if errors.Is(err, goredis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("read inbox", err)
	}
	var out []storage.InboxEntry
	for _, st := range res {
		for _, m := range st.Messages {
			from, _ := m.Values["f"].(string)
			data, _ := m.Values["e"].(string)
			out = append(out, storage.InboxEntry{ID: m.ID, From: from, Data: []byte(data)})
		}
	}
	return out, nil
}
