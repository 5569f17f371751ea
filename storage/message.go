package storage

import (
	"errors"
	"time"
)

// ErrMailboxFull: storing one more offline message would exceed the recipient's limits
// (count or bytes). Nothing was written.
var ErrMailboxFull = errors.New("storage: offline mailbox full")

// Message is one offline MESSAGE kept for a user who could not be reached (RFC 3428 relayed
// later, DESIGN §5). Header values are stored as received (already sanitised by the proxy);
// Body is raw bytes, never text: linphone's IMDNs are deflate-compressed.
type Message struct {
	// ID is assigned by the store when the message is stored; it is unique within the AOR and
	// orders the AOR's messages (oldest first).
	ID string `json:"id"`
	// DedupKey identifies the message across retransmissions and re-sends: the CPIM
	// imdn.Message-ID when present, else "Call-ID CSeq". A second message with the same key
	// for the same AOR is not stored again.
	DedupKey string `json:"dedup_key"`
	// CallID and CSeq are the original request's: re-sent with them, the recipient's IMDNs
	// (linphone uses the Call-ID as message id for plain text) still name what the sender sent.
	CallID          string    `json:"call_id"`
	CSeq            uint32    `json:"cseq"`
	From            string    `json:"from"`
	To              string    `json:"to"`
	Date            string    `json:"date,omitempty"`
	ContentType     string    `json:"content_type"`
	ContentEncoding string    `json:"content_encoding,omitempty"`
	Body            []byte    `json:"body"`
	StoredAt        time.Time `json:"stored_at"`
	// ExpiresAt is when the message is dropped undelivered (stored-at plus the max age).
	ExpiresAt time.Time `json:"expires_at"`
}

// Size is what the message counts against a mailbox's byte limit.
func (m *Message) Size() int {
	return len(m.Body) + len(m.From) + len(m.To) + len(m.Date) + len(m.ContentType) + len(m.ContentEncoding)
}

// MailboxLimits bound one AOR's offline mailbox. Zero means no limit.
type MailboxLimits struct {
	MaxCount int
	MaxBytes int
}

// ExpiredMessage is one offline message dropped undelivered because it reached its max age.
type ExpiredMessage struct {
	AOR     string
	Message Message
}
