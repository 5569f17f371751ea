package storage

import "time"

// MessageSummary is a user's message summary (MWI, RFC 3842) as a PBX's NOTIFY or the admin
// API last set it: one small record per AOR, without expiry (presence/mwi, its MailboxStore).
type MessageSummary struct {
	// Body is the document as presence/mwi formats it.
	Body []byte
	// UpdatedAt is when it was set, to the nanosecond: the newest of it and the message
	// summaries published (PUBLISH) is the state.
	UpdatedAt time.Time
}

// MaxMessageSummary bounds a stored message summary's Body: a formatted summary of every
// class with the largest counts and account fits many times.
const MaxMessageSummary = 4096
