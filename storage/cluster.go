package storage

import "time"

// NodeRecord is one node's membership record, what its last heartbeat wrote (package cluster
// keeps it, through storage/redis). The record lives while its lease runs.
type NodeRecord struct {
	ID string `json:"id"`
	// Listeners are the node's SIP listeners (scheme://host:port).
	Listeners []string `json:"listeners,omitempty"`
	// Started is when the node's process started, by its own clock.
	Started time.Time `json:"started"`
	// Subscriptions and Flows are how many subscriptions and client flows the node owned at
	// its last heartbeat.
	Subscriptions int `json:"subscriptions"`
	Flows         int `json:"flows"`
	// Heartbeat is when the record was last written and ExpiresAt when its lease ends, both
	// by the store's clock (so nodes whose clocks differ agree on them); the store sets both.
	Heartbeat time.Time `json:"-"`
	ExpiresAt time.Time `json:"-"`
}

// InboxAppend is one entry to append to a node's inbox: the events From sent it, encoded by
// the cluster bus (Data is opaque to the store).
type InboxAppend struct {
	Node string
	From string
	Data []byte
}

// InboxEntry is one entry read from a node's inbox; ID is the store's, increasing.
type InboxEntry struct {
	ID   string
	From string
	Data []byte
}
