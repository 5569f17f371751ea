package sanity

import (
	"context"
	"strings"

	"github.com/simpled/simpled/base/sipx"

	"github.com/emiago/sipgo/sip"
)

// options answers OPTIONS addressed to the server itself (keepalive pings, monitoring,
// capability queries) with 200 and Allow, Accept and Supported (RFC 3261 §11.2). It sits
// before auth: phones ping their registrar without credentials.
type options struct {
	next      sipx.Handler
	isOurs    func(host string) bool
	allow     func() string
	accept    string
	supported string
}

func (o *options) Name() string { return "options" }

func (o *options) ServeSIP(ctx context.Context, tx sip.ServerTransaction, req *sip.Request) (int, error) {
	if req.Method != sip.OPTIONS || req.Recipient.User != "" || !o.isOurs(req.Recipient.Host) {
		return sipx.Next(ctx, o.next, tx, req)
	}
	// §11.2: Require from the UAC is checked like for any request the server terminates.
	if bad := sipx.Unsupported(req, "Require", strings.Split(o.supported, ", ")...); len(bad) > 0 {
		return sipx.Respond(tx, req, 420, "", sip.NewHeader("Unsupported", strings.Join(bad, ", ")))
	}
	return sipx.Respond(tx, req, 200, "",
		sip.NewHeader("Allow", o.allow()),
		sip.NewHeader("Accept", o.accept),
		sip.NewHeader("Supported", o.supported),
		sip.NewHeader("Accept-Encoding", "identity"),
		sip.NewHeader("Accept-Language", "en"),
	)
}
