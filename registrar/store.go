package registrar

import (
	"context"
	"time"

	"github.com/simpled/simpled/storage"
)

// Store is what the registrar needs from a storage backend. storage/memory and storage/redis
// implement it; storage/storagetest checks both against the same contract.
type Store interface {
	// UpdateBindings applies one REGISTER to aor atomically, with the semantics documented on
	// storage.BindingUpdate. On any error nothing was written.
	UpdateBindings(ctx context.Context, aor string, u storage.BindingUpdate) (storage.BindingResult, error)
	// Bindings returns aor's bindings live at now, ordered by Key; none is an empty result,
	// not an error.
	Bindings(ctx context.Context, aor string, now time.Time) ([]storage.Binding, error)
	// RemoveBindings removes every binding of aor and returns them, ordered by Key (admin
	// API). Bindings that expired but were not swept yet are removed and returned too (they
	// will not be reported by SweepExpired). An AOR without bindings gives an empty result.
	RemoveBindings(ctx context.Context, aor string) ([]storage.Binding, error)
	// RemoveFlowBindings removes, atomically, aor's bindings live at now whose Flow is flow
	// (the connection or UDP flow they were registered over closed or died) and returns
	// them, ordered by Key. A binding of aor bound to another flow, or to none, stays: the
	// same device registered again over a new connection before the old one closed keeps its
	// binding. Bindings that expired are left to SweepExpired, which reports them. An empty
	// flow is an error; no matching binding gives an empty result.
	RemoveFlowBindings(ctx context.Context, aor, flow string, now time.Time) ([]storage.Binding, error)
	// SweepExpired removes at most limit bindings, over all AORs, that expired at now and
	// returns them. Each expired binding is returned once in total, even when several nodes
	// sweep one Redis concurrently, so the event it causes fires once. Bindings that
	// UpdateBindings already reported in Result.Expired, or that were removed, are not
	// returned. It returns fewer than limit only when no more bindings expired at now are
	// left to sweep, so a caller may loop until then. limit must be positive.
	SweepExpired(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredBinding, error)
}
