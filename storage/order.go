package storage

import "strings"

// The orders every backend returns its lists in (byte order of strings, as Go compares them).

// CompareBindings orders bindings by Key: every list of a BindingResult and Bindings.
func CompareBindings(a, b Binding) int { return strings.Compare(a.Key, b.Key) }

// ComparePublications orders publications oldest UpdatedAt first, then by ETag: the order
// composition relies on (the newest wins).
func ComparePublications(a, b Publication) int {
	if c := a.UpdatedAt.Compare(b.UpdatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.ETag, b.ETag)
}

// CompareSubscriptions orders subscriptions by ID.
func CompareSubscriptions(a, b Subscription) int { return strings.Compare(a.ID, b.ID) }

// CompareMessages orders offline messages by ID, which is store order: both backends give IDs
// of one width that grow as messages are stored.
func CompareMessages(a, b Message) int { return strings.Compare(a.ID, b.ID) }
