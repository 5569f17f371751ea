package storage

import (
	"context"
	"io"
)

// Backend is what every storage backend offers besides the stage interfaces: a health check for
// /readyz and Close.
type Backend interface {
	io.Closer
	// Ping reports whether the backend answers.
	Ping(ctx context.Context) error
}
