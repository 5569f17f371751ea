// Package logging builds simpled's zap loggers, bridges sipgo's slog output into the same zap
// core, and defines the log field keys once (snake_case), so every stage logs the same names.
// It is its own folder because both the server wiring and every stage import it, and it must
// import none of them.
package logging

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
)

// Log field keys. Use these, never ad-hoc names.
const (
	KeyCallID     = "call_id"
	KeyAOR        = "aor"
	KeyContact    = "contact"
	KeyMethod     = "method"
	KeyCSeq       = "cseq"
	KeyBranch     = "branch"
	KeyFromTag    = "from_tag"
	KeyToTag      = "to_tag"
	KeyRemoteAddr = "remote_addr"
	KeyTransport  = "transport"
	KeyEvent      = "event"
	KeyETag       = "etag"
	KeyExpires    = "expires"
	KeyStatus     = "status"
	KeyReason     = "reason"
	KeyUser       = "user"
	KeyListener   = "listener"
	KeyStore      = "store"
	KeyStage      = "stage"
	KeyDuration   = "duration"
)

// Options selects the level and encoding of the logs.
type Options struct {
	Level  string // debug, info, warn, error
	Format string // console or json; "" picks console on a terminal, json otherwise
}

// New builds the root logger writing to stderr.
func New(o Options) (*zap.Logger, error) {
	var lvl zapcore.Level
	if err := lvl.UnmarshalText([]byte(orDefault(o.Level, "info"))); err != nil {
		return nil, fmt.Errorf("logging: level %q: %w", o.Level, err)
	}
	format := o.Format
	if format == "" {
		format = "json"
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			format = "console"
		}
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, fmt.Errorf("logging: format %q: want console or json", o.Format)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(os.Stderr), lvl)
	return zap.New(core), nil
}

// Slog returns a slog.Logger that writes into log's core, for sipgo (sip.SetDefaultLogger,
// WithServerLogger, WithClientLogger). Peers drive much of what sipgo logs (it logs every
// unparsable message at Error with its raw bytes), so the bridge caps raw "data" fields at
// MaxLoggedData bytes and samples: at most 10 identical lines per second, then 1 in 100.
func Slog(log *zap.Logger) *slog.Logger {
	core := zapcore.NewSamplerWithOptions(&truncatingCore{Core: log.Core()}, time.Second, 10, 100)
	return slog.New(zapslog.NewHandler(core, zapslog.WithName("sipgo")))
}

// MaxLoggedData bounds a raw message logged by sipgo.
const MaxLoggedData = 512

// truncatingCore shortens string fields named "data" (sipgo's raw message dumps).
type truncatingCore struct{ zapcore.Core }

func (c *truncatingCore) With(fields []zapcore.Field) zapcore.Core {
	return &truncatingCore{Core: c.Core.With(truncate(fields))}
}

func (c *truncatingCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *truncatingCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	return c.Core.Write(ent, truncate(fields))
}

func truncate(fields []zapcore.Field) []zapcore.Field {
	for i, f := range fields {
		if f.Key == "data" && f.Type == zapcore.StringType && len(f.String) > MaxLoggedData {
			fields[i].String = f.String[:MaxLoggedData] + "...(truncated)"
		}
	}
	return fields
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}
