package auth_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/simpled/simpled/base/redistest"
	"github.com/simpled/simpled/internal/servertest"

	goredis "github.com/redis/go-redis/v9"
)

// TestCredentialsFromStore puts a credential into Redis the way README.md shows (raw hash and
// set, as an operator would with redis-cli) and registers with it: challenged, then 200;
// a wrong password gets 403.
func TestCredentialsFromStore(t *testing.T) {
	rs := redistest.Start(t)
	// On loopback with no users file, credentials in Redis are used once auth.mode says so.
	srv := servertest.Start(t, func(o *servertest.Options) { o.Store = rs.URL(); o.Auth.Mode = servertest.AuthRequired })
	ha1 := servertest.MD5Hex("erin:example.test:secret-erin")
	client := goredis.NewClient(&goredis.Options{Addr: rs.Addr()})
	defer client.Close()
	ctx := context.Background()
	if err := client.HSet(ctx, "cred:{erin@example.test}", "example.test", `{"ha1_md5":"`+ha1+`"}`).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.SAdd(ctx, "creds", "erin@example.test").Err(); err != nil {
		t.Fatal(err)
	}
	w := servertest.Dial(t, "udp", srv.Listener("udp"))
	w.Send(servertest.Register("erin", "store1", 1, "Contact: <sip:erin@127.0.0.1:5070>"))
	res401 := w.Expect(`^SIP/2.0 401 `).GetHeader("WWW-Authenticate").Value()
	ch := servertest.ChallengeParams([]string{res401})
	for _, tc := range []struct {
		password string
		want     string
		cseq     int
	}{
		{password: "wrong", want: `^SIP/2.0 403 `, cseq: 100},
		{password: "secret-erin", want: `^SIP/2.0 200 `, cseq: 101},
	} {
		nc := fmt.Sprintf("%08x", tc.cseq)
		resp := servertest.DigestMD5("erin", "example.test", tc.password, "REGISTER", "sip:example.test", ch["nonce"], nc, "abc")
		authz := fmt.Sprintf(`Digest username="erin", realm="example.test", nonce="%s", uri="sip:example.test", response="%s", algorithm=MD5, qop=auth, nc=%s, cnonce="abc"`, ch["nonce"], resp, nc)
		w.Send(servertest.Register("erin", "store1", tc.cseq, "Contact: <sip:erin@127.0.0.1:5070>", "Authorization: "+authz))
		w.Expect(tc.want)
	}
}
