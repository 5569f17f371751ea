package storage

import "context"

// Credentials is what the admin API's user endpoints need from a backend: credentials are
// created, replaced, removed and listed by AOR ("user@domain", domain in lower case). The
// digest stage reads them through auth.Store.
type Credentials interface {
	// SetCredential stores (replaces) the secrets of aor for realm.
	SetCredential(ctx context.Context, aor, realm string, c Credential) error
	// DeleteCredential removes every credential of aor (all realms) and reports whether
	// there was any.
	DeleteCredential(ctx context.Context, aor string) (bool, error)
	// ListCredentials returns the AORs that have a credential, sorted. It never returns
	// the secrets.
	ListCredentials(ctx context.Context) ([]string, error)
}
