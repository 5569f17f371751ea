package memory

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/simpled/simpled/storage"
)

// dialogTable holds the call tracker's dialogs (presence/dialog's Store): AOR → dialog ID →
// dialog. Expired dialogs are dropped when their AOR is written, and every sweepEvery writes
// the whole table is swept, so AORs nobody calls again do not stay.
type dialogTable struct {
	mu     sync.Mutex
	byAOR  map[string]map[string]storage.Dialog
	writes int
}

const sweepEvery = 1024

// PutDialog stores d under aor unless a live dialog with its ID has a rank as high or higher;
// see storage.Dialog and presence/dialog.Store.
func (s *Store) PutDialog(ctx context.Context, aor string, d storage.Dialog, now time.Time, limit int) (bool, error) {
	if err := s.check(ctx, "put dialog"); err != nil {
		return false, err
	}
	d = normalizeDialog(d)
	t := &s.dialogs
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byAOR == nil {
		t.byAOR = map[string]map[string]storage.Dialog{}
	}
	if t.writes++; t.writes%sweepEvery == 0 {
		for a, ds := range t.byAOR {
			dropExpiredDialogs(t.byAOR, a, ds, now)
		}
	}
	ds := t.byAOR[aor]
	dropExpiredDialogs(t.byAOR, aor, ds, now)
	if old, ok := ds[d.ID]; ok {
		if old.Rank >= d.Rank {
			return false, nil
		}
	} else if limit > 0 && len(ds) >= limit {
		victim := ""
		var at time.Time
		for id, o := range ds {
			if o.State == storage.DialogTerminated && (victim == "" || o.UpdatedAt.Before(at)) {
				victim, at = id, o.UpdatedAt
			}
		}
		if victim == "" {
			return false, nil
		}
		delete(ds, victim)
	}
	if ds == nil {
		ds = map[string]storage.Dialog{}
		t.byAOR[strings.Clone(aor)] = ds // a key of the store's own (detach.go)
	}
	ds[d.ID] = d
	return true, nil
}

// Dialogs returns aor's live dialogs, oldest call first.
func (s *Store) Dialogs(ctx context.Context, aor string, now time.Time) ([]storage.Dialog, error) {
	if err := s.check(ctx, "dialogs"); err != nil {
		return nil, err
	}
	s.dialogs.mu.Lock()
	var out []storage.Dialog
	for _, d := range s.dialogs.byAOR[aor] {
		if !d.Expired(now) {
			out = append(out, d)
		}
	}
	s.dialogs.mu.Unlock()
	storage.SortDialogs(out)
	return out, nil
}

func dropExpiredDialogs(all map[string]map[string]storage.Dialog, aor string, ds map[string]storage.Dialog, now time.Time) {
	for id, d := range ds {
		if d.Expired(now) {
			delete(ds, id)
		}
	}
	if ds != nil && len(ds) == 0 {
		delete(all, aor)
	}
}

// normalizeDialog is d as stored: whole-second UTC times, the rank of its state.
func normalizeDialog(d storage.Dialog) storage.Dialog {
	d.ExpiresAt, d.StartedAt, d.UpdatedAt = seconds(d.ExpiresAt), seconds(d.StartedAt), seconds(d.UpdatedAt)
	if !d.ConfirmedAt.IsZero() {
		d.ConfirmedAt = seconds(d.ConfirmedAt)
	}
	d.Rank = storage.DialogRank(d.State)
	return d
}
