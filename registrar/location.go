package registrar

import (
	"context"
	"time"

	"github.com/simpled/simpled/storage"
)

// Location is the location service (RFC 3261 §10, §16.5): the live bindings of an AOR as the
// store holds them. It needs nothing of the REGISTER stage, so the wiring builds it with the
// shared services and hands it to delivery, the proxy and presence before any stage exists.
type Location struct {
	Store Store
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Lookup returns aor's bindings live now.
func (l Location) Lookup(ctx context.Context, aor string) ([]storage.Binding, error) {
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	return l.Store.Bindings(ctx, aor, now())
}
