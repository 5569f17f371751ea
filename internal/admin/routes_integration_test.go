package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/simpled/simpled/internal/config"
	"github.com/simpled/simpled/internal/servertest"
	"github.com/simpled/simpled/routes"
)

// GET /api/v1/routes shows proxy.routes as loaded, in order, with the credentials' username
// and never the password; it is guarded like the rest of the API.
func TestRoutesEndpoint(t *testing.T) {
	pbx := config.DefaultRoute()
	pbx.Match.User, pbx.To = "^1[0-9]{3}$", []string{"sip:127.0.0.6:5080", "sip:127.0.0.5:5080"}
	pbx.Auth = routes.Credentials{Username: "trunk", Password: "pbx-password-123"}
	mwi := config.DefaultRoute()
	mwi.Match.Method, mwi.Match.Event, mwi.To, mwi.RecordRoute = []string{"SUBSCRIBE"}, "message-summary", []string{"sip:127.0.0.5:5090"}, false
	srv := servertest.Start(t, func(o *config.Options) {
		o.Admin.TokenFile = servertest.TokenFile(t)
		o.Proxy.Routes = []routes.Rule{pbx, mwi}
	})
	adminDo(t, srv, false, "GET", "/api/v1/routes", "", http.StatusUnauthorized)

	req, _ := http.NewRequest("GET", "http://"+srv.HTTPAddr()+"/api/v1/routes", nil)
	req.Header.Set("Authorization", "Bearer "+servertest.AdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, raw)
	}
	if strings.Contains(string(raw), "pbx-password-123") || strings.Contains(string(raw), "password") {
		t.Errorf("the password is shown: %s", raw)
	}
	var body struct {
		Routes []struct {
			Index int `json:"index"`
			Match struct {
				User   string   `json:"user"`
				Method []string `json:"method"`
				Event  string   `json:"event"`
			} `json:"match"`
			To          []string                   `json:"to"`
			Auth        *struct{ Username string } `json:"auth"`
			RecordRoute bool                       `json:"record_route"`
		} `json:"routes"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatal(err)
	}
	if len(body.Routes) != 2 {
		t.Fatalf("routes %s, want 2", raw)
	}
	r0, r1 := body.Routes[0], body.Routes[1]
	if r0.Index != 0 || r0.Match.User != "^1[0-9]{3}$" || len(r0.To) != 2 || r0.To[0] != "sip:127.0.0.6:5080" ||
		r0.Auth == nil || r0.Auth.Username != "trunk" || !r0.RecordRoute {
		t.Errorf("route 0 %+v", r0)
	}
	if r1.Index != 1 || r1.Match.Event != "message-summary" || r1.Auth != nil || r1.RecordRoute {
		t.Errorf("route 1 %+v", r1)
	}
}
