package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/simpled/simpled/base/logging"
	"github.com/simpled/simpled/offline"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Message is one stored offline message as the admin API shows it. Body is the content as
// text when it is UTF-8 and not content-encoded; BodyBase64 always holds the exact bytes.
type Message struct {
	ID              string    `json:"id"`
	From            string    `json:"from"`
	To              string    `json:"to"`
	Date            string    `json:"date,omitempty"`
	CallID          string    `json:"call_id"`
	ContentType     string    `json:"content_type"`
	ContentEncoding string    `json:"content_encoding,omitempty"`
	Body            *string   `json:"body,omitempty"`
	BodyBase64      []byte    `json:"body_base64"`
	StoredAt        time.Time `json:"stored_at"`
	ExpiresAt       time.Time `json:"expires_at"`
}

type messagesBody struct {
	AOR      string    `json:"aor"`
	Messages []Message `json:"messages"`
}

func (a *api) getMessages(w http.ResponseWriter, r *http.Request) {
	aor, ok := normalizeAOR(r.PathValue("aor"))
	if !ok {
		writeError(w, http.StatusBadRequest, "want an AOR like alice@example.com")
		return
	}
	msgs, err := a.o.Messages.Pending(r.Context(), aor)
	if err != nil {
		a.storeError(w, err)
		return
	}
	out := messagesBody{AOR: aor, Messages: make([]Message, 0, len(msgs))}
	for _, m := range msgs {
		v := Message{ID: m.ID, From: m.From, To: m.To, Date: m.Date, CallID: m.CallID,
			ContentType: m.ContentType, ContentEncoding: m.ContentEncoding, BodyBase64: m.Body,
			StoredAt: m.StoredAt.UTC(), ExpiresAt: m.ExpiresAt.UTC()}
		if m.ContentEncoding == "" && utf8.Valid(m.Body) {
			text := string(m.Body)
			v.Body = &text
		}
		out.Messages = append(out.Messages, v)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *api) deleteMessages(w http.ResponseWriter, r *http.Request) {
	aor, ok := normalizeAOR(r.PathValue("aor"))
	if !ok {
		writeError(w, http.StatusBadRequest, "want an AOR like alice@example.com")
		return
	}
	id := r.PathValue("id")
	n, err := a.o.Messages.Delete(r.Context(), aor, id)
	if err != nil {
		a.storeError(w, err)
		return
	}
	if n > 0 {
		a.o.Log.Info("offline messages deleted by admin", zap.String(logging.KeyAOR, aor), zap.Int("count", n))
	}
	writeJSON(w, http.StatusOK, map[string]int{"deleted": n})
}

// sender checks the from of POST /api/v1/messages. The server speaks as
// sip:system@<domain> of a local domain ("" picks the first); that is all an admin caller may
// use, since the API cannot tell which user is asking. With a token and admin.send_as_users,
// the token holder (the operator) may also send as any user of a local domain. Anything else
// is 403; a from that is not a SIP URI, 400. It returns 0 when from may be used.
func (a *api) sender(from string) (int, string) {
	if from == "" {
		return 0, ""
	}
	var u sip.Uri
	if err := sip.ParseUri(from, &u); err != nil || u.Host == "" {
		return http.StatusBadRequest, fmt.Sprintf("from %q is not a SIP URI", from)
	}
	local := a.domains[strings.ToLower(u.Host)]
	switch {
	case local && u.User == systemUser:
		return 0, ""
	case local && u.User != "" && a.o.Token != "" && a.o.SendAsUsers:
		return 0, ""
	case a.o.Token != "" && a.o.SendAsUsers:
		return http.StatusForbidden, "from must be a user of a local domain"
	}
	return http.StatusForbidden, "from must be sip:system@<a local domain> (or omitted); sending as a user needs admin.token_file and admin.send_as_users"
}

// sendRequest is the body of POST /api/v1/messages.
type sendRequest struct {
	From        string `json:"from"`
	To          string `json:"to"`
	ContentType string `json:"content_type"`
	Body        string `json:"body"`
	BodyBase64  []byte `json:"body_base64"`
}

// maxSendRequest bounds the JSON of POST /api/v1/messages.
const maxSendRequest = 1 << 20

// postMessage sends a MESSAGE as the server: 200 delivered, 202 stored for an offline user, 404
// unknown user, 400 bad request, 403 a sender the caller may not use (see sender), 413 too
// big, 415 type not relayed, 502 every device refused it (the SIP status is in the answer),
// 503 store unavailable.
func (a *api) postMessage(w http.ResponseWriter, r *http.Request) {
	var req sendRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxSendRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad JSON: "+err.Error())
		return
	}
	if code, msg := a.sender(req.From); code != 0 {
		if code == http.StatusForbidden {
			a.refused.WithLabelValues("sender").Inc()
		}
		writeError(w, code, msg)
		return
	}
	auditf(r.Context(), zap.String("to", req.To))
	if req.From != "" {
		auditf(r.Context(), zap.String("from", req.From))
	}
	body := []byte(req.Body)
	if req.BodyBase64 != nil {
		body = req.BodyBase64
	}
	if req.ContentType == "" {
		req.ContentType = "text/plain;charset=UTF-8"
	}
	status, err := a.o.Messages.Send(r.Context(), req.From, req.To, req.ContentType, body)
	if err != nil {
		if errors.Is(err, offline.ErrBadMessage) {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		a.storeError(w, err)
		return
	}
	out := map[string]any{"sip_status": status}
	code := http.StatusBadGateway
	switch {
	case status == 202:
		code, out["outcome"] = http.StatusAccepted, "stored"
	case status >= 200 && status < 300:
		code, out["outcome"] = http.StatusOK, "delivered"
	case status == 404, status == 413, status == 415:
		code, out["outcome"] = status, "refused"
	default:
		out["outcome"] = "failed: SIP " + strconv.Itoa(status)
	}
	a.o.Log.Info("message sent by admin", zap.String("to", req.To), zap.Int(logging.KeyStatus, status))
	writeJSON(w, code, out)
}
