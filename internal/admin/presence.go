package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/presence"

	"go.uber.org/zap"
)

// Presence is what /api/v1/presence needs: the presence agent.
type Presence interface {
	State(ctx context.Context, aor string) (presence.Snapshot, error)
	SetRule(ctx context.Context, aor, watcher, rule string) error
	DeleteRule(ctx context.Context, aor, watcher string) error
}

// GET /api/v1/presence/{aor}: the composed document, publications, watchers with their
// states and rules.
func (a *api) getPresence(w http.ResponseWriter, r *http.Request) {
	snap, err := a.o.Presence.State(r.Context(), r.PathValue("aor"))
	if err != nil {
		a.presenceError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, snap)
}

// ruleBody is the body of PUT /api/v1/presence/{aor}/rules/{watcher}: {"rule": "allow"}.
type ruleBody struct {
	Rule string `json:"rule"`
}

func (a *api) putRule(w http.ResponseWriter, r *http.Request) {
	var body ruleBody
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, `want {"rule": "allow|block|polite-block|pending"}`)
		return
	}
	aor, watcher := r.PathValue("aor"), r.PathValue("watcher")
	if err := a.o.Presence.SetRule(r.Context(), aor, watcher, strings.TrimSpace(body.Rule)); err != nil {
		a.presenceError(w, err)
		return
	}
	a.o.Log.Info("presence rule set by admin", zap.String(logging.KeyAOR, aor), zap.String("watcher", watcher),
		zap.String("rule", body.Rule))
	writeJSON(w, http.StatusOK, map[string]string{"aor": aor, "watcher": watcher, "rule": body.Rule})
}

func (a *api) deleteRule(w http.ResponseWriter, r *http.Request) {
	aor, watcher := r.PathValue("aor"), r.PathValue("watcher")
	if err := a.o.Presence.DeleteRule(r.Context(), aor, watcher); err != nil {
		a.presenceError(w, err)
		return
	}
	a.o.Log.Info("presence rule removed by admin", zap.String(logging.KeyAOR, aor), zap.String("watcher", watcher))
	writeJSON(w, http.StatusOK, map[string]string{"deleted": watcher})
}

func (a *api) presenceError(w http.ResponseWriter, err error) {
	if errors.Is(err, presence.ErrBadRule) {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a.storeError(w, err)
}
