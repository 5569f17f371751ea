package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	simpledconfig "github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"
)

// benchUsers writes the users file bench/compare.sh gives simpled for register_auth: the
// first n users with load.sh's passwords.
func benchUsers(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "%s@%s:%s\n", appendUser(nil, poolUsers, i), servertest.Domain, password(poolUsers, i))
	}
	path := filepath.Join(t.TempDir(), "users.txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAgainstSimpled runs every scenario against an in-process simpled (memory store, the
// per-source limits lifted as bench/compare.sh does) at 200 calls/s for 1 s, register_auth
// against one that knows the bench's users: every call must succeed.
func TestAgainstSimpled(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts simpled")
	}
	open := servertest.Start(t, servertest.LoadGenerator(nil))
	authed := servertest.Start(t, servertest.LoadGenerator(func(o *simpledconfig.Options) { o.UsersFile = benchUsers(t, 200) }))
	for _, scen := range scenarios {
		t.Run(scen, func(t *testing.T) {
			srv := open
			if scen == "register_auth" {
				srv = authed
			}
			res, err := generate(context.Background(), testConfig(t, srv.Listener("udp"), scen, 200, time.Second), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			st := res.st
			if st.created != 200 || st.ok != 200 || st.failed != 0 {
				t.Errorf("created %d ok %d failed %d (timeouts %d, unexpected %v)", st.created, st.ok, st.failed, st.timeouts, st.codes)
			}
			if res.setupName != "" && res.setup.ok != res.setupCalls {
				t.Errorf("setup %s: %d of %d", res.setupName, res.setup.ok, res.setupCalls)
			}
		})
	}
}
