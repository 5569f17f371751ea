package sipx

import (
	"net"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// BehindNAT reports whether req, received from source (host:port), was sent from another
// address than its top Via claims (RFC 3581's own signal): the client is behind a NAT, or
// writes an address nobody reaches (a browser's ".invalid" host), so requests for it must go
// back to source, not to what it wrote.
func BehindNAT(req *sip.Request, source string) bool {
	via := req.Via()
	if via == nil {
		return false
	}
	host, port, err := net.SplitHostPort(source)
	if err != nil {
		return false
	}
	vp := via.Port
	if vp == 0 {
		vp = 5060
		if strings.EqualFold(via.Transport, "TLS") || strings.EqualFold(via.Transport, "WSS") {
			vp = 5061
		}
	}
	return !strings.EqualFold(strings.Trim(via.Host, "[]"), strings.Trim(host, "[]")) || strconv.Itoa(vp) != port
}
