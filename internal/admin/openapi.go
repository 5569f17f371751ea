package admin

import (
	_ "embed"
	"net/http"
)

// openAPI is the admin API's contract (OpenAPI 3): every route New registers, its answers and
// bodies. TestOpenAPIMatchesRoutes keeps it and the routes in step.
//
//go:embed openapi.json
var openAPI []byte

// serveOpenAPI answers GET /api/v1/openapi.json. It sits behind the guard like the rest of
// /api/v1 (the token when one is set): one rule for the whole prefix is easier to trust than
// an exception, and the document is in the repository for whoever has no token.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
}
