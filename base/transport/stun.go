package transport

// STUN on the SIP UDP port. RFC 5626 §4.4.2 has a UA behind a NAT keep its UDP flow open by
// sending STUN Binding requests to the very port it sends SIP to, and compare the
// XOR-MAPPED-ADDRESS of each answer with the previous one to notice a NAT rebinding. The
// datagrams are told apart as RFC 7983 does: a STUN message begins with a byte of 0 or 1 (the two
// top bits of its type are zero and every method registered so far is below 0x100) and carries
// the magic cookie at bytes 4..7; a SIP message begins with a letter. The server side follows
// RFC 8489 (RFC 5389) without authentication: it answers Binding requests and nothing else.

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/pion/stun/v3"
)

// STUNSoftware is the SOFTWARE attribute of every STUN response.
const STUNSoftware = "simpled"

// Outcomes of HandleSTUN, reported to GuardConn.OnSTUN.
const (
	STUNBinding          = "binding"           // Binding request: success response sent
	STUNIndication       = "indication"        // indication (a keepalive): no answer
	STUNBadFingerprint   = "bad_fingerprint"   // FINGERPRINT does not verify: not STUN, discarded
	STUNUnknownAttribute = "unknown_attribute" // unknown comprehension-required attribute: 420 sent
	STUNBadRequest       = "bad_request"       // request of an unknown method: 400 sent
	STUNMalformed        = "malformed"         // bad length or truncated attribute: discarded
	STUNResponse         = "response"          // success or error response: discarded
	STUNServerError      = "server_error"      // no source address to map: 500 sent
)

const (
	stunHeaderSize    = 20
	stunMagicCookie   = 0x2112A442
	fingerprintLength = 8 // attribute header and CRC-32
	// maxUnknownAttrs bounds UNKNOWN-ATTRIBUTES (and so the 420 response) however many
	// attributes a request carries.
	maxUnknownAttrs = 32
)

// IsSTUN reports whether a datagram read from a SIP UDP socket is STUN (RFC 7983 §7: first byte
// 0..3; RFC 8489 §5: magic cookie). It does not allocate.
func IsSTUN(data []byte) bool {
	return len(data) > 0 && data[0] < 2 && stun.IsMessage(data)
}

// knownRequired are the comprehension-required attributes (type below 0x8000) the Binding server
// understands: base STUN's (RFC 8489 §18.3.1). Those only a client or an authenticating server
// acts on are known but unexpected here, and ignored (RFC 8489 §6.3): simpled asks for no
// credentials. CHANGE-REQUEST (RFC 5780), ICE's PRIORITY and the like are unknown: a 420 tells
// the client this server does not do them.
func knownRequired(t stun.AttrType) bool {
	switch t {
	case stun.AttrMappedAddress, stun.AttrUsername, stun.AttrMessageIntegrity, stun.AttrErrorCode,
		stun.AttrUnknownAttributes, stun.AttrRealm, stun.AttrNonce, stun.AttrMessageIntegritySHA256,
		stun.AttrPasswordAlgorithm, stun.AttrUserhash, stun.AttrXORMappedAddress:
		return true
	}
	return false
}

// HandleSTUN processes one STUN datagram received from `from` as a stateless Binding server and
// returns the datagram to send back (nil: none) and what it was (one of the STUN* outcomes).
// data is not retained. It never panics, whatever data holds.
//
//   - malformed (bad header, length not a multiple of 4 or not the datagram's, truncated
//     attribute): discarded;
//   - FINGERPRINT present but not last or not matching: not STUN (RFC 8489 §7.3), discarded;
//   - indication: no answer (RFC 8489 §6.3.2), whatever its method: a keepalive;
//   - success or error response: discarded (this side sends no requests);
//   - request of a method other than Binding: 400;
//   - request with an unknown comprehension-required attribute: 420 with UNKNOWN-ATTRIBUTES;
//   - Binding request: success with XOR-MAPPED-ADDRESS = from.
//
// Every response carries the request's transaction id, SOFTWARE and FINGERPRINT.
func HandleSTUN(data []byte, from net.Addr) (reply []byte, outcome string) {
	if len(data) < stunHeaderSize || data[0]&0xc0 != 0 || binary.BigEndian.Uint32(data[4:8]) != stunMagicCookie {
		return nil, STUNMalformed
	}
	if length := int(binary.BigEndian.Uint16(data[2:4])); length%4 != 0 || stunHeaderSize+length != len(data) {
		return nil, STUNMalformed
	}
	// Decode only reads Raw, and the attributes' values alias it: no copy.
	m := &stun.Message{Raw: data}
	if err := m.Decode(); err != nil {
		return nil, STUNMalformed
	}
	if !fingerprintOK(m) {
		return nil, STUNBadFingerprint
	}
	switch m.Type.Class {
	case stun.ClassIndication:
		return nil, STUNIndication
	case stun.ClassSuccessResponse, stun.ClassErrorResponse:
		return nil, STUNResponse
	}
	if m.Type.Method != stun.MethodBinding {
		return errorResponse(m, stun.CodeBadRequest, nil), STUNBadRequest
	}
	if unknown := unknownRequired(m); len(unknown) > 0 {
		return errorResponse(m, stun.CodeUnknownAttribute, unknown), STUNUnknownAttribute
	}
	ip, port, ok := addrOf(from)
	if !ok {
		return errorResponse(m, stun.CodeServerError, nil), STUNServerError
	}
	res := new(stun.Message)
	err := res.Build(m, stun.NewType(stun.MethodBinding, stun.ClassSuccessResponse),
		&stun.XORMappedAddress{IP: ip, Port: port}, stun.NewSoftware(STUNSoftware), stun.Fingerprint)
	if err != nil {
		return nil, STUNServerError
	}
	return res.Raw, STUNBinding
}

// fingerprintOK reports whether m has no FINGERPRINT, or one that is its last attribute and
// matches the CRC-32 of what precedes it (RFC 8489 §14.7).
func fingerprintOK(m *stun.Message) bool {
	for i, a := range m.Attributes {
		if a.Type != stun.AttrFingerprint {
			continue
		}
		if i != len(m.Attributes)-1 || len(a.Value) != 4 {
			return false
		}
		// The message length field already covers the FINGERPRINT attribute, as it must.
		crc := stun.FingerprintValue(m.Raw[:len(m.Raw)-fingerprintLength])
		return binary.BigEndian.Uint32(a.Value) == crc
	}
	return true
}

// unknownRequired returns the distinct comprehension-required attribute types of m that
// knownRequired refuses, up to maxUnknownAttrs. Attributes after MESSAGE-INTEGRITY(-SHA256) are
// ignored (RFC 8489 §14.5, §14.6).
func unknownRequired(m *stun.Message) []stun.AttrType {
	var unknown []stun.AttrType
next:
	for _, a := range m.Attributes {
		switch {
		case a.Type == stun.AttrMessageIntegrity || a.Type == stun.AttrMessageIntegritySHA256:
			return unknown
		case a.Type.Optional() || knownRequired(a.Type):
			continue
		}
		for _, u := range unknown {
			if u == a.Type {
				continue next
			}
		}
		if unknown = append(unknown, a.Type); len(unknown) == maxUnknownAttrs {
			return unknown
		}
	}
	return unknown
}

// unknownAttributes is UNKNOWN-ATTRIBUTES as RFC 8489 §14.9 encodes it: 16 bits per type, the
// attribute padded to 32 bits. (pion's stun.UnknownAttributes spends 32 bits on each.)
type unknownAttributes []stun.AttrType

func (u unknownAttributes) AddTo(m *stun.Message) error {
	v := make([]byte, 2*len(u))
	for i, t := range u {
		binary.BigEndian.PutUint16(v[2*i:], t.Value())
	}
	m.Add(stun.AttrUnknownAttributes, v)
	return nil
}

// errorResponse answers request m with code, listing unknown for a 420.
func errorResponse(m *stun.Message, code stun.ErrorCode, unknown []stun.AttrType) []byte {
	setters := []stun.Setter{m, stun.NewType(m.Type.Method, stun.ClassErrorResponse), code}
	if len(unknown) > 0 {
		setters = append(setters, unknownAttributes(unknown))
	}
	setters = append(setters, stun.NewSoftware(STUNSoftware), stun.Fingerprint)
	res := new(stun.Message)
	if err := res.Build(setters...); err != nil {
		return nil
	}
	return res.Raw
}

// addrOf returns the IP and port of a datagram's source.
func addrOf(a net.Addr) (net.IP, int, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		if a != nil && (len(a.IP) == net.IPv4len || len(a.IP) == net.IPv6len) {
			return a.IP, a.Port, true
		}
		return nil, 0, false
	case nil:
		return nil, 0, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return nil, 0, false
	}
	return net.IP(ap.Addr().Unmap().AsSlice()), int(ap.Port()), true
}
