package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/simpled/simpled/storage"

	goredis "github.com/redis/go-redis/v9"
)

// Offline messages (offline.MessageStore). See the package doc for the keys and round trips.

// Error replies of storeMessageScript: the mailbox is full, the sender's quota is reached,
// the foreign senders' share is full.
const (
	replyFull    = "SIMPLED_FULL"
	replySender  = "SIMPLED_SENDER"
	replyForeign = "SIMPLED_FOREIGN"
)

func msgMember(aor, id string) string { return indexMember(msgPrefix, aor, id) }

// StoreMessage appends m to aor's mailbox with the semantics of offline.MessageStore: one
// script on msg:{aor} and msgid:{aor} that drops the expired messages, checks the dedup key
// and the limits and stores m atomically, then (when it stored m) a second round trip adds
// the index entry. It writes nothing when it returns a duplicate or an error.
//
// Should that ZADD fail (after go-redis's own retry; it does not stop when ctx ends), the
// message stays stored and its ID is returned without an error: an error would make the
// sender send it again, under a new dedup key when it carries no imdn.Message-ID, and the
// user would get it twice. The message then has no index entry, so ExpireMessages never
// reports it; it is still hidden once expired, dropped by the next StoreMessage for the AOR,
// and removed with the key's TTL at the latest.
func (s *Store) StoreMessage(ctx context.Context, aor string, m storage.Message, lim storage.MailboxLimits, now time.Time) (string, bool, error) {
	const step = "store message"
	// The script compares the key with the one in the stored JSON header (DeleteMessage,
	// expiry): both must be the decoded form.
	m.DedupKey = asJSONString(m.DedupKey)
	m.Sender = asJSONString(m.Sender) // compared with the stored ones: the stored form too
	blob, err := encodeMessage(&m)
	if err != nil {
		return "", false, fmt.Errorf("redis: %s: %s: %w", step, aor, err)
	}
	exp := m.ExpiresAt.Unix()
	keys := []string{msgKey(aor), msgIDKey(aor)}
	foreign := 0
	if m.Foreign {
		foreign = 1
	}
	rep, err := storeMessageScript.Run(ctx, s.c, keys, now.Unix(), m.DedupKey, exp, m.Size(),
		max(lim.MaxCount, 0), max(lim.MaxBytes, 0), s.grace.Milliseconds(), m.Sender, foreign,
		max(lim.MaxPerSender, 0), max(lim.MaxForeignCount, 0), max(lim.MaxForeignBytes, 0), blob).StringSlice()
	switch {
	case err == nil:
	case goredis.HasErrorPrefix(err, replySender):
		return "", false, fmt.Errorf("redis: %s: %s: %s: %w", step, aor, strings.TrimPrefix(err.Error(), replySender+" "), storage.ErrSenderQuota)
	case goredis.HasErrorPrefix(err, replyForeign):
		return "", false, fmt.Errorf("redis: %s: %s: %s: %w", step, aor, strings.TrimPrefix(err.Error(), replyForeign+" "), storage.ErrForeignShare)
	case goredis.HasErrorPrefix(err, replyFull):
		return "", false, fmt.Errorf("redis: %s: %s: %s: %w", step, aor, strings.TrimPrefix(err.Error(), replyFull+" "), storage.ErrMailboxFull)
	default:
		return "", false, unavailable(step, err)
	}
	if len(rep) != 2 {
		return "", false, fmt.Errorf("redis: %s: %s: unexpected script reply %q", step, aor, rep)
	}
	id := rep[1]
	if rep[0] == "dup" {
		return id, true, nil
	}
	// Stored: the entry must follow even if the caller gives up now (the client's timeouts
	// still bound it).
	_ = s.c.ZAdd(context.WithoutCancel(ctx), expKey(aor), goredis.Z{Score: float64(exp), Member: msgMember(aor, id)}).Err()
	return id, false, nil
}

// Messages returns aor's messages not expired at now, oldest first (one HGETALL).
func (s *Store) Messages(ctx context.Context, aor string, now time.Time) ([]storage.Message, error) {
	const step = "messages"
	vals, err := s.c.HGetAll(ctx, msgKey(aor)).Result()
	if err != nil {
		return nil, unavailable(step, err)
	}
	n := now.Unix()
	out := make([]storage.Message, 0, len(vals))
	for id, v := range vals {
		m, err := decodeMessage(id, v)
		if err != nil {
			return nil, fmt.Errorf("redis: %s: %s: %q: %w", step, aor, id, err)
		}
		if m.ExpiresAt.Unix() > n {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, storage.CompareMessages)
	return out, nil
}

// HasMessages reports whether aor's mailbox holds any message, expired ones included (one
// EXISTS: the scripts delete the keys of an empty mailbox).
func (s *Store) HasMessages(ctx context.Context, aor string) (bool, error) {
	cmd := goredis.NewIntCmd(ctx, "exists", msgKey(aor))
	s.batch.do(ctx, cmd)
	n, err := cmd.Result()
	if err != nil {
		return false, unavailable("has messages", err)
	}
	return n > 0, nil
}

// DeleteMessage removes the message id of aor, or fails with storage.ErrNotFound: one
// pipeline of a script on msg:{aor} and msgid:{aor} and the ZREM of its index entry.
func (s *Store) DeleteMessage(ctx context.Context, aor, id string) error {
	const step = "delete message"
	keys := []string{msgKey(aor), msgIDKey(aor)}
	pipe := s.c.Pipeline()
	del := deleteMessageScript.EvalSha(ctx, pipe, keys, id)
	zrem := pipe.ZRem(ctx, expKey(aor), msgMember(aor, id))
	_, _ = pipe.Exec(ctx)
	if isNoScript(del.Err()) {
		del = deleteMessageScript.Eval(ctx, s.c, keys, id)
	}
	n, err := del.Int64()
	if err != nil {
		return unavailable(step, err)
	}
	if n == 0 {
		return fmt.Errorf("redis: %s: %s: %q: %w", step, aor, id, storage.ErrNotFound)
	}
	// A ZREM that failed leaves an entry the sweep drops when it comes due.
	_ = zrem.Err()
	return nil
}

// DeleteMessages removes every message of aor, expired ones included, and reports how many
// there were: HKEYS and DEL of both keys in one MULTI/EXEC, then the ZREM of their index
// entries (best effort: an entry left behind is dropped by the sweep when it comes due).
func (s *Store) DeleteMessages(ctx context.Context, aor string) (int, error) {
	const step = "delete messages"
	var ids *goredis.StringSliceCmd
	_, err := s.c.TxPipelined(ctx, func(p goredis.Pipeliner) error {
		ids = p.HKeys(ctx, msgKey(aor))
		p.Del(ctx, msgKey(aor), msgIDKey(aor))
		return nil
	})
	if err != nil {
		return 0, unavailable(step, err)
	}
	if len(ids.Val()) > 0 {
		members := make([]any, len(ids.Val()))
		for i, id := range ids.Val() {
			members[i] = msgMember(aor, id)
		}
		_ = s.c.ZRem(ctx, expKey(aor), members...).Err()
	}
	return len(ids.Val()), nil
}

// messageSweep is the offline messages' part of the shared expiry sweep (sweep.go). Its
// script replies "live" only for an index entry written early or for a reused ID.
var messageSweep = sweepKind[storage.ExpiredMessage]{
	step:   "expire messages",
	prefix: msgPrefix,
	script: expireMessageScript,
	keys:   func(aor string) []string { return []string{msgKey(aor), msgIDKey(aor)} },
	decode: func(aor, id, v string) (storage.ExpiredMessage, error) {
		m, err := decodeMessage(id, v)
		return storage.ExpiredMessage{AOR: aor, Message: m}, err
	},
}

// ExpireMessages removes at most limit messages that expired at now, earliest first, over
// all AORs, and returns them; each is returned by exactly one call, whichever node makes it.
// It works as SweepExpired does for bindings (see the package doc), on the "msg|" entries of
// the same index. When Redis fails after some messages were removed, those are returned
// without an error (the next call reports the error); they are never dropped.
func (s *Store) ExpireMessages(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredMessage, error) {
	return messageSweep.sweep(ctx, s, now, limit)
}

// MarkKnown remembers aor as a known user until the given time (whole seconds), never
// shortening a later until already stored: one script on known:{aor}. The key expires
// Options.KeyGrace after until (PXAT, on Redis's clock; the grace absorbs clock offsets, and
// Known decides on the stored until with the caller's clock).
func (s *Store) MarkKnown(ctx context.Context, aor string, until time.Time) error {
	u := until.Unix()
	at := max(u*1000+s.grace.Milliseconds(), 1) // PXAT must be positive; a past one deletes
	if err := s.runScript(ctx, markKnownScript, []string{knownKey(aor)}, []any{u, at}, nil, nil).Err(); err != nil {
		return unavailable("mark known", err)
	}
	return nil
}

// Known reports whether aor was marked known with an until after now (one GET).
func (s *Store) Known(ctx context.Context, aor string, now time.Time) (bool, error) {
	const step = "known"
	cmd := goredis.NewStringCmd(ctx, "get", knownKey(aor))
	s.batch.do(ctx, cmd)
	v, err := cmd.Result()
	if errors.Is(err, goredis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, unavailable(step, err)
	}
	u, err := decodeUntil(v)
	if err != nil {
		return false, fmt.Errorf("redis: %s: %s: %w", step, aor, err)
	}
	return u > now.Unix(), nil
}

// msgLib is Lua shared by the message scripts, which all take KEYS[1] = msg:{aor} and
// KEYS[2] = msgid:{aor}.
const msgLib = `
-- header decodes the JSON header of a stored message, or returns nil.
local function header(v)
  local nl = string.find(v, '\n', 1, true)
  if not nl then return nil end
  local ok, h = pcall(cjson.decode, string.sub(v, 1, nl - 1))
  if not ok or type(h) ~= 'table' then return nil end
  return h
end

-- remove deletes message id (stored value v) and its dedup entry, and both keys once the
-- mailbox is empty.
local function remove(id, v)
  redis.call('HDEL', KEYS[1], id)
  local h = header(v)
  if h and type(h.dedup_key) == 'string' then
    local meta = redis.call('HGET', KEYS[2], h.dedup_key)
    if meta and string.sub(meta, 1, #id + 1) == id .. ' ' then
      redis.call('HDEL', KEYS[2], h.dedup_key)
    end
  end
  if redis.call('HLEN', KEYS[1]) == 0 then
    redis.call('DEL', KEYS[1], KEYS[2])
  end
end
`

// storeMessageScript implements StoreMessage (offline.MessageStore's rules, in order).
//
//	KEYS[1]  msg:{aor}    hash: id → JSON header, newline, body
//	KEYS[2]  msgid:{aor}  hash: dedup key → "<id> <expires_at> <size> <foreign 0/1> <sender>"
//	         (entries written before senders were kept lack the last two: foreign 0, sender "")
//	ARGV     now (unix s), dedup key, expires_at (unix s), size, max_count, max_bytes (0: no
//	         limit), grace (ms), sender, foreign (0/1), max_per_sender, max_foreign_count,
//	         max_foreign_bytes (0: no limit), stored value
//
// It works from msgid:{aor} alone (no body is read): the expired messages are those whose
// expires_at is at or before now, the others give the counts, the bytes and the duplicate.
// It replies {"dup", id} (nothing written), {"stored", id}, or the error SIMPLED_SENDER,
// SIMPLED_FOREIGN or SIMPLED_FULL, checked in that order (nothing written). When it stores, it deletes the expired messages, gives the message the
// ID max(Redis TIME in µs, highest ID + 1) as 16 zero-padded digits (so string order is store
// order, and IDs are not reused after the mailbox empties), and sets both keys' TTL to the
// latest expiry + grace. An entry of msgid:{aor} that does not parse is dropped like an
// expired one: it cannot be counted.
var storeMessageScript = goredis.NewScript(`
local now = tonumber(ARGV[1])
local key = ARGV[2]
local exp = tonumber(ARGV[3])
local size = tonumber(ARGV[4])
local maxcount = tonumber(ARGV[5])
local maxbytes = tonumber(ARGV[6])
local grace = tonumber(ARGV[7])
local sender = ARGV[8]
local foreign = ARGV[9] == '1'
local maxsender = tonumber(ARGV[10])
local maxfcount = tonumber(ARGV[11])
local maxfbytes = tonumber(ARGV[12])

local count, bytes, scount, fcount, fbytes, last, maxexp = 0, 0, 0, 0, 0, 0, exp
local dropkeys, dropids = {}, {}
local raw = redis.call('HGETALL', KEYS[2])
for i = 1, #raw, 2 do
  local id, e, n, f, s = string.match(raw[i + 1], '^(%d+) (%-?%d+) (%d+) ([01]) (.*)$')
  if not id then
    id, e, n = string.match(raw[i + 1], '^(%d+) (%-?%d+) (%d+)$')
    f, s = '0', ''
  end
  if not id then
    dropkeys[#dropkeys + 1] = raw[i]
  else
    e, n = tonumber(e), tonumber(n)
    if tonumber(id) > last then last = tonumber(id) end
    if e <= now then
      dropkeys[#dropkeys + 1] = raw[i]
      dropids[#dropids + 1] = id
    else
      if raw[i] == key then return {'dup', id} end
      count = count + 1
      bytes = bytes + n
      if s == sender then scount = scount + 1 end
      if f == '1' then
        fcount = fcount + 1
        fbytes = fbytes + n
      end
      if e > maxexp then maxexp = e end
    end
  end
end
if maxsender > 0 and scount + 1 > maxsender then
  return redis.error_reply(string.format('SIMPLED_SENDER %d messages from the sender, at most %d', scount + 1, maxsender))
end
if foreign and maxfcount > 0 and fcount + 1 > maxfcount then
  return redis.error_reply(string.format('SIMPLED_FOREIGN %d foreign messages, at most %d', fcount + 1, maxfcount))
end
if foreign and maxfbytes > 0 and fbytes + size > maxfbytes then
  return redis.error_reply(string.format('SIMPLED_FOREIGN %d foreign bytes, at most %d', fbytes + size, maxfbytes))
end
if maxcount > 0 and count + 1 > maxcount then
  return redis.error_reply(string.format('SIMPLED_FULL %d messages, at most %d', count + 1, maxcount))
end
if maxbytes > 0 and bytes + size > maxbytes then
  return redis.error_reply(string.format('SIMPLED_FULL %d bytes, at most %d', bytes + size, maxbytes))
end

for i = 1, #dropkeys, 1000 do
  redis.call('HDEL', KEYS[2], unpack(dropkeys, i, math.min(i + 999, #dropkeys)))
end
for i = 1, #dropids, 1000 do
  redis.call('HDEL', KEYS[1], unpack(dropids, i, math.min(i + 999, #dropids)))
end
local t = redis.call('TIME')
local n = math.max(tonumber(t[1]) * 1000000 + tonumber(t[2]), last + 1)
local id = string.format('%016.0f', n)
while redis.call('HEXISTS', KEYS[1], id) == 1 do
  n = n + 1
  id = string.format('%016.0f', n)
end
redis.call('HSET', KEYS[1], id, ARGV[13])
redis.call('HSET', KEYS[2], key, id .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[9] .. ' ' .. sender)
local ttl = string.format('%.0f', math.max(maxexp - now, 0) * 1000 + grace)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
return {'stored', id}
`)

// deleteMessageScript deletes one message and its dedup entry.
//
//	KEYS     msg:{aor}, msgid:{aor}
//	ARGV     id
//
// It replies 1 when it deleted the message, 0 when there was none.
var deleteMessageScript = goredis.NewScript(msgLib + `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return 0 end
remove(ARGV[1], v)
return 1
`)

// expireMessageScript deletes one message if it has expired at now.
//
//	KEYS     msg:{aor}, msgid:{aor}
//	ARGV     id, now (unix s)
//
// It replies {"expired", value} when it deleted the message, {"live", expires_at} when the
// message is still live (the index entry must be put back), {"corrupt", value} when the
// header did not decode (it is deleted: it cannot expire otherwise), or {"none"}.
var expireMessageScript = goredis.NewScript(msgLib + `
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {'none'} end
local h = header(v)
if not h or type(h.expires_at) ~= 'number' then
  remove(ARGV[1], v)
  return {'corrupt', v}
end
if h.expires_at <= tonumber(ARGV[2]) then
  remove(ARGV[1], v)
  return {'expired', v}
end
return {'live', string.format('%.0f', h.expires_at)}
`)

// markKnownScript stores a known-until that never moves back.
//
//	KEYS[1]  known:{aor}
//	ARGV     until (unix s), key expiry (unix ms, PXAT)
//
// It replies 1 when it stored until, 0 when a later or equal one was stored already. A stored
// value that is not a number is replaced.
var markKnownScript = goredis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '')
if cur and cur >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
return 1
`)
