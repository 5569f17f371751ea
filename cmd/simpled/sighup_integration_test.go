package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// TestBinaryReloadsUsersOnSIGHUP starts simpled with a users file, rewrites the file and
// sends SIGHUP: GET /api/v1/users lists the new user and not the removed one, without a
// restart. A broken file on the next SIGHUP is logged as an error and keeps the users.
func TestBinaryReloadsUsersOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(users, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("alice@example.test:secret-alice\n")
	proc := startSimpled(t, buildSimpled(t), "-listen", "udp://127.0.0.1:0", "-http", "127.0.0.1:0",
		"-domain", "example.test", "-users", users, "-log-format", "json")
	cmd := proc.Cmd
	waitFor := func(re string) string {
		t.Helper()
		return proc.waitLine(t, re)
	}
	httpURL := regexp.MustCompile(`"listener":"(http://[^"]+)"`).FindStringSubmatch(waitFor(`"listener":"http://`))[1]
	listUsers := func() string {
		t.Helper()
		resp, err := http.Get(httpURL + "/api/v1/users")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var list struct {
			Users []struct{ AOR string }
		}
		if err := json.Unmarshal(b, &list); err != nil {
			t.Fatalf("%v: %s", err, b)
		}
		var aors []string
		for _, u := range list.Users {
			aors = append(aors, u.AOR)
		}
		return strings.Join(aors, ",")
	}
	if got := listUsers(); got != "alice@example.test" {
		t.Fatalf("users at start: %s", got)
	}

	write("bob@example.test:secret-bob\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(`reload: users file loaded.*"added":\["bob@example.test"\].*"removed":\["alice@example.test"\]`)
	if got := listUsers(); got != "bob@example.test" {
		t.Fatalf("users after SIGHUP: %s, want bob@example.test", got)
	}

	write("carol@example.test\n") // no password: does not parse
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if line := waitFor(`reload: users file not loaded`); !strings.Contains(line, `"level":"error"`) || !strings.Contains(line, "users:1:") {
		t.Errorf("broken file logged as: %s", line)
	}
	if got := listUsers(); got != "bob@example.test" {
		t.Fatalf("users after a broken file: %s, want bob@example.test kept", got)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}
