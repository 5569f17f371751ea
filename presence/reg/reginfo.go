package reg

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// Namespace is the reginfo namespace (RFC 3680 §5.4); ContentType the documents' media type.
const (
	Namespace   = "urn:ietf:params:xml:ns:reginfo"
	ContentType = "application/reginfo+xml"
)

// MaxSize is the largest document Parse reads, in bytes.
const MaxSize = 256 << 10

// Document states (the reginfo element's state attribute).
const (
	Full    = "full"
	Partial = "partial"
)

// Registration states (RFC 3680 §5.1.1): init before any contact, active while one is, and
// terminated when the last one went.
const (
	RegInit       = "init"
	RegActive     = "active"
	RegTerminated = "terminated"
)

// Contact states and events (RFC 3680 §5.1.2).
const (
	ContactActive     = "active"
	ContactTerminated = "terminated"

	EvRegistered   = "registered"
	EvCreated      = "created"
	EvRefreshed    = "refreshed"
	EvShortened    = "shortened"
	EvExpired      = "expired"
	EvDeactivated  = "deactivated"
	EvProbation    = "probation"
	EvUnregistered = "unregistered"
	EvRejected     = "rejected"
)

// Info is a reginfo document.
type Info struct {
	XMLName       xml.Name       `xml:"urn:ietf:params:xml:ns:reginfo reginfo"`
	Version       uint32         `xml:"version,attr"`
	State         string         `xml:"state,attr"`
	Registrations []Registration `xml:"registration"`
}

// Registration is one address-of-record's registration.
type Registration struct {
	AOR      string    `xml:"aor,attr"`
	ID       string    `xml:"id,attr"`
	State    string    `xml:"state,attr"`
	Contacts []Contact `xml:"contact"`
}

// Contact is one contact of a registration. Expires is nil when absent (a terminated
// contact's); Q is the q-value as written ("0.5"), "" when absent.
type Contact struct {
	ID          string  `xml:"id,attr"`
	State       string  `xml:"state,attr"`
	Event       string  `xml:"event,attr"`
	Expires     *uint32 `xml:"expires,attr,omitempty"`
	RetryAfter  *uint32 `xml:"retry-after,attr,omitempty"`
	Q           string  `xml:"q,attr,omitempty"`
	CallID      string  `xml:"callid,attr,omitempty"`
	CSeq        *uint32 `xml:"cseq,attr,omitempty"`
	URI         string  `xml:"uri"`
	DisplayName string  `xml:"display-name,omitempty"`
	// Params are the contact's parameters that have no element of their own: the RFC 5626
	// instance id (name "+sip.instance", its value quoted as in the Contact header) and
	// reg-id.
	Params []Param `xml:"unknown-param"`
}

// Param is an unknown-param element.
type Param struct {
	Name  string `xml:"name,attr"`
	Value string `xml:",chardata"`
}

// Marshal writes info as a document. Every value is XML-escaped (encoding/xml), and a
// character XML cannot carry is written as U+FFFD, so what came from the network (contact
// URIs, instance ids, Call-IDs) cannot change the document's structure.
func Marshal(info *Info) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	if err := enc.Encode(info); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ErrInvalid is the error Parse wraps for a document it refuses.
var ErrInvalid = errors.New("reginfo: invalid document")

// Parse reads a reginfo document: at most MaxSize bytes, no DTD, the reginfo namespace,
// a state of full or partial and registrations with an aor.
func Parse(data []byte) (*Info, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalid, MaxSize)
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	// No entity is defined beyond XML's own, and a DOCTYPE is refused below.
	for {
		tok, err := dec.RawToken()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: no root element", ErrInvalid)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		if d, ok := tok.(xml.Directive); ok {
			return nil, fmt.Errorf("%w: declaration %.20q", ErrInvalid, string(d))
		}
		if _, ok := tok.(xml.StartElement); ok {
			break
		}
	}
	var info Info
	if err := xml.Unmarshal(data, &info); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if info.State != Full && info.State != Partial {
		return nil, fmt.Errorf("%w: state %.20q", ErrInvalid, info.State)
	}
	for _, r := range info.Registrations {
		if r.AOR == "" || r.ID == "" {
			return nil, fmt.Errorf("%w: registration without aor or id", ErrInvalid)
		}
	}
	return &info, nil
}
