package memory

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/simpled/simpled/storage"
)

// knownGrace is how long after its until a known-user record is kept before ExpireMessages
// prunes it: Known decides with the caller's now, and a caller whose clock lags the sweeper's
// must still get the right answer.
const knownGrace = time.Hour

// idWidth is the width of message IDs: zero-padded decimal, so string order is store order.
const idWidth = 16

// mailbox is one AOR's offline messages: msgs ordered by ID (store order), and the entry of
// each DedupKey.
type mailbox struct {
	msgs  []*msgEntry
	byKey map[string]*msgEntry
}

// msgEntry is one stored message. m holds whole-second UTC times and a private Body.
type msgEntry struct {
	aor  string
	m    storage.Message
	exp  int64 // m.ExpiresAt in unix seconds
	size int   // m.Size() as stored
	idx  int   // position in Store.msgExp
}

// knownEntry is one AOR marked known until a unix second.
type knownEntry struct {
	aor   string
	until int64
	idx   int // position in Store.knownExp
}

// copyMessage returns a copy of a stored message that the caller may modify.
func copyMessage(m storage.Message) storage.Message {
	m.Body = cloneBody(m.Body)
	return m
}

// cloneBody copies b; an empty body is nil.
func cloneBody(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return slices.Clone(b)
}

// StoreMessage appends m to aor's mailbox with the semantics of offline.MessageStore. It writes
// nothing when it returns a duplicate or an error; when it stores m, the messages of aor that
// expired at now are dropped with it.
func (s *Store) StoreMessage(ctx context.Context, aor string, m storage.Message, lim storage.MailboxLimits, now time.Time) (string, bool, error) {
	if err := s.check(ctx, "store message"); err != nil {
		return "", false, err
	}
	n := now.Unix()
	size := m.Size()

	s.msgMu.Lock()
	defer s.msgMu.Unlock()
	box := s.boxes[aor]
	count, bytes, sender, fcount, fbytes := 0, 0, 0, 0, 0
	if box != nil {
		if e := box.byKey[m.DedupKey]; e != nil && e.exp > n {
			return e.m.ID, true, nil
		}
		for _, e := range box.msgs {
			if e.exp > n {
				count++
				bytes += e.size
				if e.m.Sender == m.Sender {
					sender++
				}
				if e.m.Foreign {
					fcount++
					fbytes += e.size
				}
			}
		}
	}
	if lim.MaxPerSender > 0 && sender+1 > lim.MaxPerSender {
		return "", false, fmt.Errorf("memory: store message: %s: %d messages from %s, at most %d: %w", aor, sender+1, m.Sender, lim.MaxPerSender, storage.ErrSenderQuota)
	}
	if m.Foreign && lim.MaxForeignCount > 0 && fcount+1 > lim.MaxForeignCount {
		return "", false, fmt.Errorf("memory: store message: %s: %d foreign messages, at most %d: %w", aor, fcount+1, lim.MaxForeignCount, storage.ErrForeignShare)
	}
	if m.Foreign && lim.MaxForeignBytes > 0 && fbytes+size > lim.MaxForeignBytes {
		return "", false, fmt.Errorf("memory: store message: %s: %d foreign bytes, at most %d: %w", aor, fbytes+size, lim.MaxForeignBytes, storage.ErrForeignShare)
	}
	if lim.MaxCount > 0 && count+1 > lim.MaxCount {
		return "", false, fmt.Errorf("memory: store message: %s: %d messages, at most %d: %w", aor, count+1, lim.MaxCount, storage.ErrMailboxFull)
	}
	if lim.MaxBytes > 0 && bytes+size > lim.MaxBytes {
		return "", false, fmt.Errorf("memory: store message: %s: %d bytes, at most %d: %w", aor, bytes+size, lim.MaxBytes, storage.ErrMailboxFull)
	}

	// Commit: drop the expired messages, then append.
	if box == nil {
		box = &mailbox{byKey: make(map[string]*msgEntry)}
		s.boxes[strings.Clone(aor)] = box // a key of the store's own (detach.go)
	} else {
		box.msgs = slices.DeleteFunc(box.msgs, func(e *msgEntry) bool {
			if e.exp > n {
				return false
			}
			s.unlinkMessage(box, e)
			return true
		})
	}
	s.msgSeq++
	m.ID = formatID(s.msgSeq)
	m.StoredAt = seconds(m.StoredAt)
	m.ExpiresAt = seconds(m.ExpiresAt)
	m.Body = cloneBody(m.Body)
	detachMessage(&m)
	e := &msgEntry{aor: strings.Clone(aor), m: m, exp: m.ExpiresAt.Unix(), size: size}
	box.msgs = append(box.msgs, e)
	box.byKey[m.DedupKey] = e
	heap.Push(&s.msgExp, e)
	return m.ID, false, nil
}

// formatID turns a sequence number into a message ID.
func formatID(seq uint64) string {
	id := strconv.FormatUint(seq, 10)
	if len(id) < idWidth {
		id = strings.Repeat("0", idWidth-len(id)) + id
	}
	return id
}

// unlinkMessage removes e from the mailbox's key index and the expiry heap; the caller
// removes it from box.msgs. s.msgMu is held.
func (s *Store) unlinkMessage(box *mailbox, e *msgEntry) {
	if box.byKey[e.m.DedupKey] == e {
		delete(box.byKey, e.m.DedupKey)
	}
	heap.Remove(&s.msgExp, e.idx)
}

// Messages returns aor's messages not expired at now, oldest first.
func (s *Store) Messages(ctx context.Context, aor string, now time.Time) ([]storage.Message, error) {
	if err := s.check(ctx, "messages"); err != nil {
		return nil, err
	}
	n := now.Unix()
	s.msgMu.RLock()
	defer s.msgMu.RUnlock()
	box := s.boxes[aor]
	if box == nil {
		return []storage.Message{}, nil
	}
	out := make([]storage.Message, 0, len(box.msgs))
	for _, e := range box.msgs {
		if e.exp > n {
			out = append(out, copyMessage(e.m))
		}
	}
	return out, nil
}

// HasMessages reports whether aor's mailbox holds any message, expired ones included.
func (s *Store) HasMessages(ctx context.Context, aor string) (bool, error) {
	if err := s.check(ctx, "has messages"); err != nil {
		return false, err
	}
	s.msgMu.RLock()
	defer s.msgMu.RUnlock()
	return s.boxes[aor] != nil, nil
}

// DeleteMessage removes the message id of aor, or fails with storage.ErrNotFound.
func (s *Store) DeleteMessage(ctx context.Context, aor, id string) error {
	if err := s.check(ctx, "delete message"); err != nil {
		return err
	}
	s.msgMu.Lock()
	defer s.msgMu.Unlock()
	box := s.boxes[aor]
	i := -1
	if box != nil {
		// IDs grow with the sequence and have one width, so msgs is sorted by ID.
		j, ok := slices.BinarySearchFunc(box.msgs, id, func(e *msgEntry, id string) int { return strings.Compare(e.m.ID, id) })
		if ok {
			i = j
		}
	}
	if i < 0 {
		return fmt.Errorf("memory: delete message: %s: %q: %w", aor, id, storage.ErrNotFound)
	}
	s.unlinkMessage(box, box.msgs[i])
	box.msgs = slices.Delete(box.msgs, i, i+1)
	if len(box.msgs) == 0 {
		delete(s.boxes, aor)
	}
	return nil
}

// DeleteMessages removes every message of aor, expired ones included, and reports how many
// there were.
func (s *Store) DeleteMessages(ctx context.Context, aor string) (int, error) {
	if err := s.check(ctx, "delete messages"); err != nil {
		return 0, err
	}
	s.msgMu.Lock()
	defer s.msgMu.Unlock()
	box := s.boxes[aor]
	if box == nil {
		return 0, nil
	}
	for _, e := range box.msgs {
		heap.Remove(&s.msgExp, e.idx)
	}
	delete(s.boxes, aor)
	return len(box.msgs), nil
}

// ExpireMessages removes at most limit messages that expired at now, earliest first, over
// all AORs, and returns them. A removed message is gone, so it is returned once. It also
// forgets the known users whose until passed more than an hour before now.
func (s *Store) ExpireMessages(ctx context.Context, now time.Time, limit int) ([]storage.ExpiredMessage, error) {
	if err := s.check(ctx, "expire messages"); err != nil {
		return nil, err
	}
	if err := storage.CheckLimit(limit); err != nil {
		return nil, fmt.Errorf("memory: expire messages: %w", err)
	}
	n := now.Unix()
	s.pruneKnown(n - int64(knownGrace/time.Second))

	s.msgMu.Lock()
	defer s.msgMu.Unlock()
	var out []storage.ExpiredMessage
	for len(out) < limit && len(s.msgExp) > 0 && s.msgExp[0].exp <= n {
		e := s.msgExp[0]
		box := s.boxes[e.aor]
		s.unlinkMessage(box, e)
		// Entries expire roughly in store order, so the one to drop is usually first.
		if i := slices.Index(box.msgs, e); i >= 0 {
			box.msgs = slices.Delete(box.msgs, i, i+1)
		}
		if len(box.msgs) == 0 {
			delete(s.boxes, e.aor)
		}
		out = append(out, storage.ExpiredMessage{AOR: e.aor, Message: e.m}) // gone: no copy needed
	}
	return out, nil
}

// MarkKnown remembers aor as a known user until the given time (whole seconds); an earlier
// until than the one stored changes nothing.
func (s *Store) MarkKnown(ctx context.Context, aor string, until time.Time) error {
	if err := s.check(ctx, "mark known"); err != nil {
		return err
	}
	u := until.Unix()
	s.knownMu.Lock()
	defer s.knownMu.Unlock()
	if e := s.known[aor]; e != nil {
		if u > e.until {
			e.until = u
			heap.Fix(&s.knownExp, e.idx)
		}
		return nil
	}
	e := &knownEntry{aor: strings.Clone(aor), until: u}
	s.known[aor] = e
	heap.Push(&s.knownExp, e)
	return nil
}

// Known reports whether aor was marked known with an until after now.
func (s *Store) Known(ctx context.Context, aor string, now time.Time) (bool, error) {
	if err := s.check(ctx, "known"); err != nil {
		return false, err
	}
	s.knownMu.RLock()
	defer s.knownMu.RUnlock()
	e := s.known[aor]
	return e != nil && e.until > now.Unix(), nil
}

// pruneKnown forgets the known users whose until is at or before cutoff (unix seconds).
func (s *Store) pruneKnown(cutoff int64) {
	s.knownMu.Lock()
	defer s.knownMu.Unlock()
	for len(s.knownExp) > 0 && s.knownExp[0].until <= cutoff {
		e := heap.Pop(&s.knownExp).(*knownEntry)
		delete(s.known, e.aor)
	}
}

// before orders stored messages by expiry, then AOR and ID (the heap of ExpireMessages).
func (e *msgEntry) before(o *msgEntry) bool {
	if e.exp != o.exp {
		return e.exp < o.exp
	}
	return e.aor < o.aor || (e.aor == o.aor && e.m.ID < o.m.ID)
}

func (e *msgEntry) heapIndex() *int { return &e.idx }

// before orders known-user records by until.
func (e *knownEntry) before(o *knownEntry) bool { return e.until < o.until }

func (e *knownEntry) heapIndex() *int { return &e.idx }
