package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/simpled/simpled/routes"
)

// proxy.routes parses into rules, each key left out at DefaultRoute's value (record_route
// true), a method given as one string a list of one.
func TestParseRoutes(t *testing.T) {
	o, err := ParseString(`
proxy:
  routes:
    - match: {user: "^1[0-9]{3}$"}
      to: ["sip:127.0.0.6:5080", "sip:127.0.0.5:5080"]
      auth: {username: trunk, password: secret}
    - match: {method: SUBSCRIBE, event: message-summary, domain: "*.example.test"}
      to: sip:127.0.0.7:5090;transport=tcp
      record_route: false
`)
	if err != nil {
		t.Fatal(err)
	}
	first := DefaultRoute()
	first.Match.User = "^1[0-9]{3}$"
	first.To = []string{"sip:127.0.0.6:5080", "sip:127.0.0.5:5080"}
	first.Auth = routes.Credentials{Username: "trunk", Password: "secret"}
	second := DefaultRoute()
	second.Match = routes.Match{Method: []string{"SUBSCRIBE"}, Event: "message-summary", Domain: "*.example.test"}
	second.To = []string{"sip:127.0.0.7:5090;transport=tcp"}
	second.RecordRoute = false
	if want := []routes.Rule{first, second}; !reflect.DeepEqual(o.Proxy.Routes, want) {
		t.Errorf("routes\n got %+v\nwant %+v", o.Proxy.Routes, want)
	}
	// -t prints the routes, never a password; what it prints parses back.
	y := o.YAML()
	if strings.Contains(y, "password: secret") || !strings.Contains(y, `password: '***'`) || !strings.Contains(y, "username: trunk") {
		t.Errorf("YAML() shows the password or hides the username:\n%s", y)
	}
	back, err := ParseString(y)
	if err != nil {
		t.Fatalf("YAML() does not parse back: %v\n%s", err, y)
	}
	if len(back.Proxy.Routes) != 2 || back.Proxy.Routes[1].RecordRoute || back.Proxy.Routes[0].Auth.Password != masked {
		t.Errorf("parsed back %+v", back.Proxy.Routes)
	}
}

// A bad route is refused by simpled -t with the route's index and key, each problem at once.
func TestRoutesValidation(t *testing.T) {
	for _, c := range []struct{ name, route, want string }{
		{"bad regex", `{match: {user: "^1[0-9"}, to: [sip:192.0.2.1]}`, `proxy.routes[0].match.user: route 0: "^1[0-9": not a regular expression`},
		{"empty to", `{match: {user: "^1"}, to: []}`, `proxy.routes[0].to: route 0: no next hop`},
		{"no to", `{match: {user: "^1"}}`, `proxy.routes[0].to: route 0: no next hop`},
		{"bad URI", `{to: ["http://192.0.2.1/"]}`, `proxy.routes[0].to[0]: route 0: "http://192.0.2.1/": want a sip: or sips: URI`},
		{"user in hop", `{to: ["sip:pbx@192.0.2.1"]}`, `a next hop names a server, not a user`},
		{"bad domain", `{match: {domain: "a*b"}, to: [sip:192.0.2.1]}`, `proxy.routes[0].match.domain`},
		{"password alone", `{to: [sip:192.0.2.1], auth: {password: x}}`, `proxy.routes[0].auth.username: route 0: a password without a username`},
		{"loop to our listener", `{to: ["sip:192.0.2.1", "sip:127.0.0.1:5060"]}`, `proxy.routes[0].to[1]: route 0: "sip:127.0.0.1:5060" is this server`},
		{"loop to our listener, default port", `{to: ["sip:127.0.0.1"]}`, `is this server`},
		{"loop to our domain", `{to: ["sip:example.test"]}`, `"sip:example.test" is this server`},
		{"unknown key", `{match: {usr: x}, to: [sip:192.0.2.1]}`, `proxy.routes[0].match.usr: unknown key (did you mean user?)`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseString("domain: example.test\nlisten: [udp://127.0.0.1:5060]\nproxy:\n  routes:\n    - {to: [sip:192.0.2.9]}\n    - " + strings.ReplaceAll(c.route, "routes[0]", "routes[1]") + "\n")
			want := strings.ReplaceAll(strings.ReplaceAll(c.want, "routes[0]", "routes[1]"), "route 0", "route 1")
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("error %v, want one containing %q", err, want)
			}
		})
	}
	// A hop on another port of our address, or on our address when we listen on port 0, is
	// another server.
	for _, ok := range []string{"listen: [udp://127.0.0.1:5060]\nproxy: {routes: [{to: [\"sip:127.0.0.1:5080\"]}]}",
		"listen: [udp://127.0.0.1:0]\nproxy: {routes: [{to: [\"sip:127.0.0.1:5060\"]}]}"} {
		if _, err := ParseString(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
}
