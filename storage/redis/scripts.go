package redis

import goredis "github.com/redis/go-redis/v9"

// Every script touches the keys of one Cluster slot only: the keys it is given (one each) and
// nothing else. Scripts never re-encode a binding: they decode the stored JSON to read
// call_id, cseq, expires_at and updated_at (integers below 2^53, exact in Lua's doubles) and
// pass the original strings through, so cjson's quirks (empty arrays, number formatting) never
// reach stored data. String comparison is done byte by byte where order matters, because
// Lua's < follows the server's collation locale.

// Error replies the scripts send; mapped to storage sentinels in Go.
const (
	replyStale   = "SIMPLED_STALE"
	replyTooMany = "SIMPLED_TOOMANY"
	replyCorrupt = "SIMPLED_CORRUPT"
)

// updateScript applies one storage.BindingUpdate to reg:{aor} (see storage.BindingUpdate for
// the rules it implements, in order).
//
//	KEYS[1]  reg:{aor}
//	ARGV     now (unix s), remove_all (0/1), call_id, cseq, max_bindings, evict_oldest (0/1),
//	         grace (ms), then per change: key, call_id, cseq, expires_at (unix s), binding JSON
//
// It replies {bindings..., removed JSON..., expired JSON..., evicted JSON..., added keys...,
// refreshed keys...} or an error reply SIMPLED_STALE, SIMPLED_TOOMANY or SIMPLED_CORRUPT, in
// which case it wrote nothing. A binding in the first list is its JSON, or, when this update
// stored it, the number of its change (0 for the first): the caller has that JSON already, so
// a refresh's reply is a few bytes, not the binding again. On success the key's TTL is set to
// the latest expiry + grace.
var updateScript = goredis.NewScript(`
local function bytesless(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local now = tonumber(ARGV[1])
local remove_all = ARGV[2] == '1'
local ra_callid = ARGV[3]
local ra_cseq = tonumber(ARGV[4])
local max = tonumber(ARGV[5])
local evict = ARGV[6] == '1'
local grace = tonumber(ARGV[7])
local first = 8
local nchanges = (#ARGV - first + 1) / 5

-- cur: key -> {json, call_id, cseq, expires_at, updated_at} of the live bindings.
local cur = {}
local del = {}
local expired, removed, evicted, added, refreshed = {}, {}, {}, {}, {}
local raw = redis.call('HGETALL', KEYS[1])
for i = 1, #raw, 2 do
  local ok, b = pcall(cjson.decode, raw[i + 1])
  if not ok or type(b) ~= 'table' or type(b.call_id) ~= 'string' or type(b.cseq) ~= 'number'
      or type(b.expires_at) ~= 'number' or type(b.updated_at) ~= 'number' then
    return redis.error_reply('SIMPLED_CORRUPT stored binding does not decode')
  end
  if b.expires_at <= now then
    expired[#expired + 1] = raw[i + 1]
    del[#del + 1] = raw[i]
  else
    cur[raw[i]] = {raw[i + 1], b.call_id, b.cseq, b.expires_at, b.updated_at}
  end
end

local set = {}
local touched = {}
if remove_all then
  for _, b in pairs(cur) do
    if b[2] == ra_callid and b[3] >= ra_cseq then return redis.error_reply('SIMPLED_STALE') end
  end
  for k, b in pairs(cur) do
    removed[#removed + 1] = b[1]
    del[#del + 1] = k
  end
  cur = {}
else
  local last = {}
  for i = 0, nchanges - 1 do
    local a = first + i * 5
    local b = cur[ARGV[a]]
    if b and b[2] == ARGV[a + 1] and b[3] >= tonumber(ARGV[a + 2]) then
      return redis.error_reply('SIMPLED_STALE')
    end
    last[ARGV[a]] = i
  end
  for i = 0, nchanges - 1 do
    local a = first + i * 5
    local k = ARGV[a]
    if last[k] == i then
      local exp = tonumber(ARGV[a + 3])
      if exp <= now then
        if cur[k] then
          removed[#removed + 1] = cur[k][1]
          del[#del + 1] = k
          cur[k] = nil
        end
      else
        if cur[k] then refreshed[#refreshed + 1] = k else added[#added + 1] = k end
        cur[k] = {ARGV[a + 4], ARGV[a + 1], tonumber(ARGV[a + 2]), exp, nil, i}
        touched[k] = true
        set[#set + 1] = k
        set[#set + 1] = ARGV[a + 4]
      end
    end
  end
end

local count = 0
for _ in pairs(cur) do count = count + 1 end
if max > 0 and count > max then
  if not evict then return redis.error_reply('SIMPLED_TOOMANY') end
  local cand = {}
  for k in pairs(cur) do
    if not touched[k] then cand[#cand + 1] = k end
  end
  local need = count - max
  if need > #cand then return redis.error_reply('SIMPLED_TOOMANY') end
  table.sort(cand, function(x, y)
    local ux, uy = cur[x][5], cur[y][5]
    if ux ~= uy then return ux < uy end
    return bytesless(x, y)
  end)
  for i = 1, need do
    local k = cand[i]
    evicted[#evicted + 1] = cur[k][1]
    del[#del + 1] = k
    cur[k] = nil
  end
end

-- Write: deletions first (an expired key may be registered again), then the new values.
for i = 1, #del, 1000 do
  redis.call('HDEL', KEYS[1], unpack(del, i, math.min(i + 999, #del)))
end
for i = 1, #set, 1000 do
  redis.call('HSET', KEYS[1], unpack(set, i, math.min(i + 999, #set)))
end
local out, maxexp = {}, nil
for _, b in pairs(cur) do
  out[#out + 1] = b[6] or b[1]
  if maxexp == nil or b[4] > maxexp then maxexp = b[4] end
end
if maxexp ~= nil then
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', (maxexp - now) * 1000 + grace))
end
return {out, removed, expired, evicted, added, refreshed}
`)

// dueScript lists the due entries of one kind in one exp:{n} index shard: members that start
// with the kind's prefix ("reg|", "msg|", "pub|", "sub|") and whose score is at or before
// now, earliest first, at most want of them. It pages through the due range inside Redis, skipping the
// other kinds' entries, so a backlog of one kind cannot hide another's.
//
//	KEYS[1]  exp:{n}
//	ARGV     prefix, now (unix s), want
//
// It replies {member, score, member, score, ...}.
var dueScript = goredis.NewScript(`
local prefix, now, want = ARGV[1], ARGV[2], tonumber(ARGV[3])
local page = math.max(want, 128)
local out, off = {}, 0
while true do
  local r = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', off, page)
  for i = 1, #r, 2 do
    if string.sub(r[i], 1, #prefix) == prefix then
      out[#out + 1] = r[i]
      out[#out + 1] = r[i + 1]
      if #out >= 2 * want then return out end
    end
  end
  if #r < 2 * page then return out end
  off = off + page
end
`)

// claimScript removes one member of an exp:{n} index if its score is still at or before now,
// so of several sweepers exactly one claims it, and a refresh that raced (a higher score) is
// kept.
//
//	KEYS[1]  exp:{n}
//	ARGV     member, now (unix s)
//
// It replies 1 when this call removed the member, else 0.
var claimScript = goredis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) <= tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
`)

// expireScript deletes one binding from reg:{aor} if it has expired at now.
//
//	KEYS[1]  reg:{aor}
//	ARGV     binding key, now (unix s)
//
// It replies {"expired", JSON} when it deleted the binding, {"live", expires_at} when the
// binding is still live (the index entry must be put back), {"corrupt", value} when the value
// did not decode (it is deleted: it cannot expire otherwise), or {"none"}.
var expireScript = goredis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return {'none'} end
local ok, b = pcall(cjson.decode, v)
if not ok or type(b) ~= 'table' or type(b.expires_at) ~= 'number' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return {'corrupt', v}
end
if b.expires_at <= tonumber(ARGV[2]) then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return {'expired', v}
end
return {'live', string.format('%.0f', b.expires_at)}
`)

// flowScript deletes from reg:{aor} the bindings live at now that are bound to one flow (the
// connection or UDP flow they were registered over ended). A binding of another flow — the
// same device registered again over a new connection — stays, and so do expired ones (the
// sweep reports them) and values that do not decode (left for the update script to report).
// The key's TTL is left as it is: still at or after the latest expiry of what remains, plus
// grace. The index entries of the deleted bindings are left to the sweep, which finds nothing
// and drops them.
//
//	KEYS[1]  reg:{aor}
//	ARGV     now (unix s), flow
//
// It replies {JSON...}: the bindings it deleted.
var flowScript = goredis.NewScript(`
local now, flow = tonumber(ARGV[1]), ARGV[2]
local raw = redis.call('HGETALL', KEYS[1])
local out, del = {}, {}
for i = 1, #raw, 2 do
  local ok, b = pcall(cjson.decode, raw[i + 1])
  if ok and type(b) == 'table' and b.flow == flow and type(b.expires_at) == 'number'
      and b.expires_at > now then
    out[#out + 1] = raw[i + 1]
    del[#del + 1] = raw[i]
  end
end
for i = 1, #del, 1000 do
  redis.call('HDEL', KEYS[1], unpack(del, i, math.min(i + 999, #del)))
end
return out
`)

// nonceScript is the nonce-count replay guard: compare and set with a TTL.
//
//	KEYS[1]  nonce:{nonce}
//	ARGV     nc, ttl (ms)
//
// It replies 1 and stores nc (TTL ttl) when nc is higher than the stored count or none is
// stored, else 0.
var nonceScript = goredis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local c = tonumber(cur)
  if c == nil then return redis.error_reply('SIMPLED_CORRUPT stored nonce count is not a number') end
  if c >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`)
