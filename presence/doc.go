// Package presence is simpled's presence agent (RFC 3856): it accepts PUBLISH for the
// presentities of its domains (RFC 3903, publish.go), keeps SUBSCRIBE dialogs for the events
// presence and presence.winfo (RFC 6665, RFC 3857; subscribe.go) and sends their NOTIFYs
// (notify.go), composing each presentity's document from all its live publications or, when it
// has none, from its registrations (compose.go). Watchers are authorized by the presentity's
// rules (authorize.go) and shown to the presentity in watcher information (winfo.go).
package presence
