package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/presence/mwi"

	"go.uber.org/zap"
)

// MWI is what /api/v1/mwi needs: the message-summary package (presence/mwi).
type MWI interface {
	Get(ctx context.Context, aor string) (mwi.Summary, error)
	Set(ctx context.Context, aor string, s mwi.Summary) error
	Delete(ctx context.Context, aor string) error
}

// mwiBody is the body of GET and PUT /api/v1/mwi/{aor}: the AOR and its summary.
type mwiBody struct {
	AOR     string      `json:"aor"`
	Summary mwi.Summary `json:"summary"`
	// Document is the summary as subscribers get it (application/simple-message-summary).
	Document string `json:"document"`
}

// GET /api/v1/mwi/{aor}: the user's message summary as its subscribers see it.
func (a *api) getMWI(w http.ResponseWriter, r *http.Request) {
	aor, ok := a.mwiAOR(w, r)
	if !ok {
		return
	}
	s, err := a.o.MWI.Get(r.Context(), aor)
	if err != nil {
		a.mwiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, mwiBody{AOR: aor, Summary: s, Document: string(s.Format())})
}

// PUT /api/v1/mwi/{aor} {"waiting": true, "voice": {"new": 2, "old": 1}}: sets the summary and
// notifies the user's subscribers.
func (a *api) putMWI(w http.ResponseWriter, r *http.Request) {
	aor, ok := a.mwiAOR(w, r)
	if !ok {
		return
	}
	var s mwi.Summary
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&s); err != nil {
		writeError(w, http.StatusBadRequest, `want {"waiting": true, "voice": {"new": 2, "old": 1}}: `+err.Error())
		return
	}
	if err := s.Check(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := a.o.MWI.Set(r.Context(), aor, s); err != nil {
		a.mwiError(w, err)
		return
	}
	a.o.Log.Info("message summary set by admin", zap.String(logging.KeyAOR, aor), zap.Bool("waiting", s.Waiting))
	writeJSON(w, http.StatusOK, mwiBody{AOR: aor, Summary: s, Document: string(s.Format())})
}

// DELETE /api/v1/mwi/{aor}: removes the stored summary (published ones stay until they
// expire) and notifies the user's subscribers.
func (a *api) deleteMWI(w http.ResponseWriter, r *http.Request) {
	aor, ok := a.mwiAOR(w, r)
	if !ok {
		return
	}
	if err := a.o.MWI.Delete(r.Context(), aor); err != nil {
		a.mwiError(w, err)
		return
	}
	a.o.Log.Info("message summary removed by admin", zap.String(logging.KeyAOR, aor))
	writeJSON(w, http.StatusOK, map[string]string{"deleted": aor})
}

// mwiAOR is the request's AOR, which must be of a local domain (else 400, answered).
func (a *api) mwiAOR(w http.ResponseWriter, r *http.Request) (string, bool) {
	aor, ok := normalizeAOR(r.PathValue("aor"))
	if ok {
		_, domain, _ := cutAt(aor)
		ok = a.domains[domain]
	}
	if !ok {
		writeError(w, http.StatusBadRequest, "want an AOR of a local domain, like alice@example.com")
	}
	return aor, ok
}

func cutAt(aor string) (string, string, bool) {
	for i := len(aor) - 1; i >= 0; i-- {
		if aor[i] == '@' {
			return aor[:i], aor[i+1:], true
		}
	}
	return "", aor, false
}

func (a *api) mwiError(w http.ResponseWriter, err error) {
	if errors.Is(err, mwi.ErrUnknownUser) {
		writeError(w, http.StatusNotFound, "unknown user")
		return
	}
	a.storeError(w, err)
}
