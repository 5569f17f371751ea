package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/simpled/simpled/auth"
	"github.com/simpled/simpled/storage"

	"go.uber.org/zap"
)

// UserStore is what /api/v1/users needs from the store: the credentials by AOR.
type UserStore interface {
	storage.Credentials
	// Credential returns the secrets of aor for realm, or storage.ErrNotFound.
	Credential(ctx context.Context, aor, realm string) (storage.Credential, error)
}

// UsersFile is the users file (-users) as the admin API sees it: *auth.Users.
type UsersFile interface {
	// AORs lists the file's users, sorted.
	AORs() []string
	// Lookup returns aor's credential for realm.
	Lookup(aor, realm string) (storage.Credential, bool)
}

// systemUser is the user part of the server's own sender, sip:system@<domain>: the API
// refuses to create a user of that name, which would let the server speak as them.
const systemUser = "system"

// maxPassword bounds a password given to PUT /api/v1/users/{aor}.
const maxPassword = 1024

// userBody is the body of PUT /api/v1/users/{aor}: exactly one of password (both HA1s are
// stored) or ha1 (the MD5 HA1 of user:realm:password, 32 hex digits; MD5 only).
type userBody struct {
	Password *string `json:"password"`
	HA1      *string `json:"ha1"`
}

// User is one entry of GET /api/v1/users: the AOR and where its credential lives ("file",
// "store", or both: the file's wins). Never a secret.
type User struct {
	AOR     string   `json:"aor"`
	Sources []string `json:"sources"`
}

// GET /api/v1/users: every user of the users file and the store, sorted by AOR.
func (a *api) listUsers(w http.ResponseWriter, r *http.Request) {
	stored, err := a.o.Users.ListCredentials(r.Context())
	if err != nil {
		a.storeError(w, err)
		return
	}
	var file []string
	if a.o.UsersFile != nil {
		file = a.o.UsersFile.AORs()
	}
	by := make(map[string]*User, len(stored)+len(file))
	add := func(aors []string, source string) {
		for _, aor := range aors {
			u := by[aor]
			if u == nil {
				u = &User{AOR: aor}
				by[aor] = u
			}
			if !slices.Contains(u.Sources, source) {
				u.Sources = append(u.Sources, source)
			}
		}
	}
	add(file, "file")
	add(stored, "store")
	out := make([]User, 0, len(by))
	for _, u := range by {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(x, y User) int { return strings.Compare(x.AOR, y.AOR) })
	writeJSON(w, http.StatusOK, map[string][]User{"users": out})
}

// userAOR reads and checks the {aor} of a users path. The user part becomes the digest
// username and the domain the realm, so the domain must be local; it answers the error
// itself (400 malformed, 422 foreign domain) and returns ok false.
func (a *api) userAOR(w http.ResponseWriter, r *http.Request) (aor, user, realm string, ok bool) {
	aor, ok = normalizeAOR(r.PathValue("aor"))
	if ok {
		user, realm, _ = strings.Cut(aor, "@")
		ok = validUser(user)
	}
	if !ok {
		writeError(w, http.StatusBadRequest, "want an AOR like alice@example.com (the user part without ':', quotes, backslashes or control characters)")
		return "", "", "", false
	}
	if !a.domains[realm] {
		writeError(w, http.StatusUnprocessableEntity, realm+" is not a domain of this server")
		return "", "", "", false
	}
	return aor, user, realm, true
}

// validUser reports whether s can be a digest username and a users-file entry.
func validUser(s string) bool {
	if len(s) > 256 || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c < 0x21 || c == 0x7f || c == ':' || c == '"' || c == '\\' || c == '@' || c == '#' {
			return false
		}
	}
	return true
}

// PUT /api/v1/users/{aor}: create (201) or replace (200) a user's credential in the store.
// 400 bad AOR or body, 409 the users file defines the user (edit it and send SIGHUP), 422
// a domain that is not ours or the reserved user "system", 503 store unavailable.
func (a *api) putUser(w http.ResponseWriter, r *http.Request) {
	aor, user, realm, ok := a.userAOR(w, r)
	if !ok {
		return
	}
	var body userBody
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || (body.Password == nil) == (body.HA1 == nil) {
		writeError(w, http.StatusBadRequest, `want {"password": "..."} or {"ha1": "<MD5 of user:realm:password>"}`)
		return
	}
	if user == systemUser {
		writeError(w, http.StatusUnprocessableEntity, `"system" is the server's own sender and cannot be a user`)
		return
	}
	if a.o.AuthOff {
		writeError(w, http.StatusConflict, "auth.mode is off: nobody is challenged, so a password would protect nothing; set auth.mode: required")
		return
	}
	if a.inFile(aor, realm) {
		writeError(w, http.StatusConflict, aor+" is defined in the users file, which takes precedence: change it there and send SIGHUP")
		return
	}
	var c storage.Credential
	algs := []string{"MD5"}
	if body.Password != nil {
		pw := *body.Password
		if pw == "" || len(pw) > maxPassword || !utf8.ValidString(pw) {
			writeError(w, http.StatusBadRequest, "want a password of 1 to 1024 bytes of UTF-8")
			return
		}
		c = storage.Credential{HA1MD5: auth.HA1(auth.MD5, user, realm, pw), HA1SHA256: auth.HA1(auth.SHA256, user, realm, pw)}
		algs = append(algs, "SHA-256")
	} else {
		ha1 := strings.ToLower(*body.HA1)
		if !isHex(ha1, 32) {
			writeError(w, http.StatusBadRequest, "want ha1 as 32 hex digits: the MD5 of user:realm:password")
			return
		}
		c = storage.Credential{HA1MD5: ha1}
	}
	_, err := a.o.Users.Credential(r.Context(), aor, realm)
	existed := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		a.storeError(w, err)
		return
	}
	if err := a.o.Users.SetCredential(r.Context(), aor, realm, c); err != nil {
		a.storeError(w, err)
		return
	}
	code, change := http.StatusCreated, "created"
	if existed {
		code, change = http.StatusOK, "replaced"
	}
	auditf(r.Context(), zap.String("change", change), zap.Strings("algorithms", algs))
	writeJSON(w, code, map[string]any{"aor": aor, "realm": realm, "algorithms": algs})
}

// DELETE /api/v1/users/{aor}: remove a user's credentials from the store. 404 none, 409
// the users file defines the user. The user's registrations stay until they expire or are
// removed with DELETE /api/v1/registrations/{aor}.
func (a *api) deleteUser(w http.ResponseWriter, r *http.Request) {
	aor, _, realm, ok := a.userAOR(w, r)
	if !ok {
		return
	}
	if a.inFile(aor, realm) {
		writeError(w, http.StatusConflict, aor+" is defined in the users file: remove it there and send SIGHUP")
		return
	}
	had, err := a.o.Users.DeleteCredential(r.Context(), aor)
	if err != nil {
		a.storeError(w, err)
		return
	}
	if !had {
		writeError(w, http.StatusNotFound, "no user "+aor)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"deleted": aor})
}

func (a *api) inFile(aor, realm string) bool {
	if a.o.UsersFile == nil {
		return false
	}
	_, ok := a.o.UsersFile.Lookup(aor, realm)
	return ok
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
