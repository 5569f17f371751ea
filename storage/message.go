package storage

import (
	"errors"
	"fmt"
	"time"
)

// ErrMailboxFull means storing one more offline message would exceed the recipient's limits
// (count or bytes). Nothing was written. ErrSenderQuota and ErrForeignShare are kinds of it.
var ErrMailboxFull = errors.New("storage: offline mailbox full")

// ErrSenderQuota means the recipient's mailbox already holds MailboxLimits.MaxPerSender messages
// of the message's Sender. Nothing was written; errors.Is(err, ErrMailboxFull) holds too.
var ErrSenderQuota = fmt.Errorf("storage: offline mailbox: sender's quota reached: %w", ErrMailboxFull)

// ErrForeignShare means the message is Foreign and the recipient's mailbox already holds as many
// foreign messages (or bytes) as MailboxLimits.MaxForeignCount (MaxForeignBytes) allow.
// Nothing was written; errors.Is(err, ErrMailboxFull) holds too.
var ErrForeignShare = fmt.Errorf("storage: offline mailbox: foreign senders' share full: %w", ErrMailboxFull)

// Message is one offline MESSAGE kept for a user who could not be reached (RFC 3428 relayed
// later, store-and-forward). Header values are stored as received (already sanitised by the proxy);
// Body is raw bytes, never text: linphone's IMDNs are deflate-compressed.
type Message struct {
	// ID is assigned by the store when the message is stored; it is unique within the AOR and
	// orders the AOR's messages (oldest first). Neither ID nor Body is in the stored JSON:
	// Redis keeps the ID as the hash field and the body raw after the header.
	ID string `json:"-"`
	// DedupKey identifies the message across retransmissions and re-sends: the sender's
	// identity (Sender), then the CPIM imdn.Message-ID when present, else "Call-ID CSeq". A
	// second message with the same key for the same AOR is not stored again; scoped by
	// sender, no sender can pre-empt another's message by reusing its id.
	DedupKey string `json:"dedup_key"`
	// Sender is the identity the message was accepted from (the authenticated user, else
	// the From AOR): MailboxLimits.MaxPerSender counts the messages of one Sender.
	Sender string `json:"sender,omitempty"`
	// Foreign marks a message from a sender that did not prove a local identity (inbound
	// federation, auth.mode off, in-dialog): all foreign messages together fit in
	// MailboxLimits.MaxForeignCount and MaxForeignBytes, so the rest of the mailbox stays
	// for authenticated users, trusted peers and simpled itself.
	Foreign bool `json:"foreign,omitempty"`
	// CallID and CSeq are the original request's: re-sent with them, the recipient's IMDNs
	// (linphone uses the Call-ID as message id for plain text) still name what the sender sent.
	CallID          string    `json:"call_id"`
	CSeq            uint32    `json:"cseq"`
	From            string    `json:"from"`
	To              string    `json:"to"`
	Date            string    `json:"date,omitempty"`
	ContentType     string    `json:"content_type"`
	ContentEncoding string    `json:"content_encoding,omitempty"`
	Body            []byte    `json:"-"`
	StoredAt        time.Time `json:"stored_at"`
	// ExpiresAt is when the message is dropped undelivered (stored-at plus the max age).
	ExpiresAt time.Time `json:"expires_at"`
}

// Size is what the message counts against a mailbox's byte limit.
func (m *Message) Size() int {
	return len(m.Body) + len(m.From) + len(m.To) + len(m.Date) + len(m.ContentType) + len(m.ContentEncoding)
}

// MailboxLimits bound one AOR's offline mailbox. Zero means no limit. The stored messages
// that count are the live ones (not expired at the store's now).
type MailboxLimits struct {
	// MaxCount and MaxBytes bound the whole mailbox (ErrMailboxFull).
	MaxCount int
	MaxBytes int
	// MaxPerSender bounds the messages of one Sender (ErrSenderQuota).
	MaxPerSender int
	// MaxForeignCount and MaxForeignBytes bound the Foreign messages together
	// (ErrForeignShare).
	MaxForeignCount int
	MaxForeignBytes int
}

// ExpiredMessage is one offline message dropped undelivered because it reached its max age.
type ExpiredMessage struct {
	AOR     string
	Message Message
}
