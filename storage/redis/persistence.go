package redis

import (
	"context"
	"fmt"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"
)

// Persistence is what a Redis server says about keeping its data across a restart (CONFIG GET
// appendonly, save).
type Persistence struct {
	// Addr is the server asked (for a cluster: the master that keeps the least).
	Addr string
	// AppendOnly: the append-only file is on.
	AppendOnly bool
	// Save is the RDB snapshot schedule ("3600 1 300 100"); "" means none.
	Save string
}

// Durable reports whether data survives a restart at all: an append-only file or snapshots.
// Snapshots alone still lose what was written since the last one.
func (p Persistence) Durable() bool { return p.AppendOnly || p.Save != "" }

// Persistence asks Redis how it persists data: CONFIG GET appendonly and save (on
// every master of a cluster, returning the one that keeps the least). It fails when Redis
// refuses to tell: CONFIG renamed or disabled (as managed services do), or an ACL without
// the right.
func (s *Store) Persistence(ctx context.Context) (Persistence, error) {
	cc, ok := s.c.(*goredis.ClusterClient)
	if !ok {
		return persistenceOf(ctx, s.c, "")
	}
	var (
		mu    sync.Mutex
		worst *Persistence
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *goredis.Client) error {
		p, err := persistenceOf(ctx, c, c.Options().Addr)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if worst == nil || rank(p) < rank(*worst) {
			worst = &p
		}
		return nil
	})
	if err != nil {
		return Persistence{}, err
	}
	if worst == nil {
		return Persistence{}, fmt.Errorf("redis: persistence: no master answered")
	}
	return *worst, nil
}

// rank orders persistence from none (0) to the append-only file (2).
func rank(p Persistence) int {
	switch {
	case p.AppendOnly:
		return 2
	case p.Save != "":
		return 1
	}
	return 0
}

func persistenceOf(ctx context.Context, c goredis.Cmdable, addr string) (Persistence, error) {
	vals, err := c.ConfigGet(ctx, "appendonly").Result()
	if err != nil {
		return Persistence{}, fmt.Errorf("redis: persistence: config get appendonly: %w", stripURL(err))
	}
	saves, err := c.ConfigGet(ctx, "save").Result()
	if err != nil {
		return Persistence{}, fmt.Errorf("redis: persistence: config get save: %w", stripURL(err))
	}
	aof, ok := vals["appendonly"]
	if !ok {
		return Persistence{}, fmt.Errorf("redis: persistence: config get appendonly: no value")
	}
	save, ok := saves["save"]
	if !ok {
		return Persistence{}, fmt.Errorf("redis: persistence: config get save: no value")
	}
	return Persistence{Addr: addr, AppendOnly: strings.EqualFold(aof, "yes"), Save: strings.TrimSpace(save)}, nil
}
