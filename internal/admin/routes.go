package admin

import (
	"net/http"

	"github.com/simpled/simpled/routes"
)

// routesBody is the body of GET /api/v1/routes.
type routesBody struct {
	Routes []routeView `json:"routes"`
}

// routeView is one rule of proxy.routes as loaded. Of its credentials only the username is
// shown: the password never leaves the configuration.
type routeView struct {
	Index       int       `json:"index"`
	Match       matchView `json:"match"`
	To          []string  `json:"to"`
	Auth        *authView `json:"auth,omitempty"`
	RecordRoute bool      `json:"record_route"`
}

type matchView struct {
	Domain string   `json:"domain,omitempty"`
	User   string   `json:"user,omitempty"`
	Method []string `json:"method,omitempty"`
	Event  string   `json:"event,omitempty"`
}

type authView struct {
	Username string `json:"username"`
}

// GET /api/v1/routes: the proxy.routes table in the order rules are tried.
func (a *api) getRoutes(w http.ResponseWriter, _ *http.Request) {
	out := routesBody{Routes: []routeView{}}
	for _, r := range a.o.Routes.Routes() {
		out.Routes = append(out.Routes, viewRoute(r))
	}
	writeJSON(w, http.StatusOK, out)
}

func viewRoute(r *routes.Route) routeView {
	m := r.Rule.Match
	v := routeView{Index: r.Index, To: append([]string{}, r.Rule.To...), RecordRoute: r.Rule.RecordRoute,
		Match: matchView{Domain: m.Domain, User: m.User, Method: m.Method, Event: m.Event}}
	if r.Rule.Auth.Username != "" {
		v.Auth = &authView{Username: r.Rule.Auth.Username}
	}
	return v
}
