package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/simpled/simpled/storage"

	goredis "github.com/redis/go-redis/v9"
)

// The call tracker's dialogs (presence/dialog's Store):
//
//	dlg:{aor}    hash    dialog ID → dialog JSON (storage.Dialog's JSON names, times in unix
//	                     seconds, expires_at first); TTL = latest expiry + Options.KeyGrace
//
// One script (putDialogScript) applies a dialog change atomically: it drops the AOR's expired
// dialogs, keeps a stored dialog of the same ID whose rank is as high or higher (states only
// move forward, whichever node writes), bounds the dialogs per AOR, writes, and sets the TTL.
// No expiry index: a dialog lives at most its bound, and the key's TTL drops the AOR's last.

func dialogKey(aor string) string { return "dlg:{" + aor + "}" }

// dialogRecord is a dialog as stored in dlg:{aor}.
type dialogRecord struct {
	ExpiresAt int64 `json:"expires_at"` // first, as for the other records
	*storage.Dialog
	StartedAt   int64 `json:"started_at"`
	ConfirmedAt int64 `json:"confirmed_at,omitempty"`
	UpdatedAt   int64 `json:"updated_at"`
}

func encodeDialog(d *storage.Dialog) (string, error) {
	r := dialogRecord{Dialog: d, ExpiresAt: d.ExpiresAt.Unix(), StartedAt: d.StartedAt.Unix(), UpdatedAt: d.UpdatedAt.Unix()}
	if !d.ConfirmedAt.IsZero() {
		r.ConfirmedAt = d.ConfirmedAt.Unix()
	}
	return encodeJSON(&r)
}

func decodeDialog(v string) (storage.Dialog, error) {
	var d storage.Dialog
	r := dialogRecord{Dialog: &d}
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return d, fmt.Errorf("corrupt dialog: %w", err)
	}
	d.ExpiresAt, d.StartedAt, d.UpdatedAt = fromUnix(r.ExpiresAt), fromUnix(r.StartedAt), fromUnix(r.UpdatedAt)
	if r.ConfirmedAt != 0 {
		d.ConfirmedAt = fromUnix(r.ConfirmedAt)
	}
	return d, nil
}

// putDialogScript implements PutDialog.
//
//	KEYS[1]  dlg:{aor}
//	ARGV     now (unix s), id, rank, expires_at (unix s), limit (0: none), value, grace (ms)
//
// It replies 1 when the dialog was stored, 0 when not (a stored one ranks as high, or the
// AOR is full of live calls). A value that does not decode counts as expired and is dropped.
var putDialogScript = goredis.NewScript(`
local now, id, rank = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local latest, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local all = redis.call('HGETALL', KEYS[1])
local live, stored, victim, victimAt = 0, false, nil, nil
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  local ok, d = pcall(cjson.decode, v)
  local exp = ok and type(d) == 'table' and tonumber(d.expires_at) or nil
  if exp == nil or exp <= now then
    redis.call('HDEL', KEYS[1], f)
  elseif f == id then
    if (tonumber(d.rank) or 0) >= rank then return 0 end
    stored = true
    if exp > latest then latest = exp end
  else
    live = live + 1
    if exp > latest then latest = exp end
    local at = tonumber(d.updated_at) or 0
    if d.state == 'terminated' and (victim == nil or at < victimAt) then victim, victimAt = f, at end
  end
end
if not stored and limit > 0 and live >= limit then
  if victim == nil then return 0 end
  redis.call('HDEL', KEYS[1], victim)
end
redis.call('HSET', KEYS[1], id, ARGV[6])
redis.call('PEXPIREAT', KEYS[1], latest * 1000 + tonumber(ARGV[7]))
return 1
`)

// PutDialog stores d under aor unless a live dialog with its ID ranks as high or higher; see
// storage.Dialog and presence/dialog.Store.
func (s *Store) PutDialog(ctx context.Context, aor string, d storage.Dialog, now time.Time, limit int) (bool, error) {
	d.Rank = storage.DialogRank(d.State)
	v, err := encodeDialog(&d)
	if err != nil {
		return false, fmt.Errorf("redis: put dialog: %w", err)
	}
	n, err := s.runScript(ctx, putDialogScript, []string{dialogKey(aor)},
		[]any{now.Unix(), d.ID, d.Rank, d.ExpiresAt.Unix(), limit, v, s.grace.Milliseconds()}, nil, nil).Int()
	if err != nil {
		return false, unavailable("put dialog", err)
	}
	return n == 1, nil
}

// Dialogs returns aor's live dialogs, oldest call first.
func (s *Store) Dialogs(ctx context.Context, aor string, now time.Time) ([]storage.Dialog, error) {
	return liveValues(ctx, s, "dialogs", aor, dialogKey(aor), now,
		func(_, v string) (storage.Dialog, error) { return decodeDialog(v) },
		func(d *storage.Dialog) time.Time { return d.ExpiresAt },
		func(a, b storage.Dialog) int {
			if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
				return c
			}
			if a.ID < b.ID {
				return -1
			}
			if a.ID > b.ID {
				return 1
			}
			return 0
		})
}
