package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/simpled/simpled/storage"
)

// CredentialStore is where credentials live besides the users file.
type CredentialStore interface {
	// Credential returns the secrets of aor ("user@domain") for realm, or storage.ErrNotFound.
	Credential(ctx context.Context, aor, realm string) (storage.Credential, error)
}

// Directory is the users service: who has credentials, from the users file (-users) first,
// then the store. The identity stage verifies digest answers against it, the proxy and the
// presence agent ask it whether a user is known, and the admin API lists the file's users.
// The wiring builds one before the stages and reloads its file on SIGHUP. It is safe for
// concurrent use.
type Directory struct {
	path  string
	file  *Users // nil without a users file
	store CredentialStore
}

// NewDirectory loads the users file at path ("" for none) over store.
func NewDirectory(path string, store CredentialStore) (*Directory, error) {
	d := &Directory{path: path, store: store}
	if path != "" {
		f, err := LoadUsers(path)
		if err != nil {
			return nil, err // names the file and each bad line already
		}
		d.file = f
	}
	return d, nil
}

// File returns the users file's credentials, nil without a users file.
func (d *Directory) File() *Users { return d.file }

// Path returns the users file's name, "" without one.
func (d *Directory) Path() string { return d.path }

// Reload reads the users file again: users added to it can authenticate and users removed from
// it no longer can. A file that does not parse changes nothing. Without a users file it does
// nothing (ok false).
func (d *Directory) Reload() (diff UsersDiff, ok bool, err error) {
	if d.file == nil {
		return UsersDiff{}, false, nil
	}
	diff, err = d.file.Reload(d.path)
	return diff, true, err
}

// Known reports whether aor ("user@domain") has credentials for its domain's realm, in the users
// file or the store: the proxy's test for a known user (docs/cli.md).
func (d *Directory) Known(ctx context.Context, aor string) (bool, error) {
	_, domain, ok := strings.Cut(aor, "@")
	if !ok {
		return false, nil
	}
	_, found, err := lookupCredential(ctx, d.file, d.store, aor, strings.ToLower(domain))
	return found, err
}

// Credential looks aor up for realm in the users file, then in the store.
func (d *Directory) Credential(ctx context.Context, aor, realm string) (storage.Credential, bool, error) {
	return lookupCredential(ctx, d.file, d.store, aor, realm)
}

// lookupCredential looks aor up in file (may be nil), then in store.
func lookupCredential(ctx context.Context, file *Users, store CredentialStore, aor, realm string) (storage.Credential, bool, error) {
	if c, ok := file.Lookup(aor, realm); ok {
		return c, true, nil
	}
	c, err := store.Credential(ctx, aor, realm)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return storage.Credential{}, false, nil
	case err != nil:
		return storage.Credential{}, false, fmt.Errorf("auth: credential: %w", err)
	}
	return c, true, nil
}
