package storage

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Checks both backends make before they touch anything. They find a caller's bug, not a
// state of the store, so they return plain errors (no sentinel); the backends wrap them with
// their name and step.

// Validate returns why u is malformed, or nil: every change needs a Key.
func (u *BindingUpdate) Validate() error {
	for i := range u.Changes {
		if u.Changes[i].Binding.Key == "" {
			return fmt.Errorf("change %d: empty key", i)
		}
	}
	return nil
}

// Validate returns why op is malformed, or nil: a removal needs IfMatch; anything else a
// NewETag and an ExpiresAt after Now; a new publication a Body.
func (op *PublishOp) Validate() error {
	switch {
	case op.Remove && op.IfMatch == "":
		return errors.New("remove without IfMatch")
	case op.Remove:
		return nil
	case op.NewETag == "":
		return errors.New("empty NewETag")
	case op.IfMatch == "" && op.Body == nil:
		return errors.New("new publication without Body")
	case op.ExpiresAt.Unix() <= op.Now.Unix():
		return fmt.Errorf("ExpiresAt %v not after Now %v", op.ExpiresAt, op.Now)
	}
	return nil
}

// Validate returns why s cannot be stored, or nil: it needs an ID.
func (s *Subscription) Validate() error {
	if s.ID == "" {
		return errors.New("empty ID")
	}
	return nil
}

// CheckRule returns an error unless watcher is set and rule is a Rule* value.
func CheckRule(watcher, rule string) error {
	if watcher == "" || !slices.Contains([]string{RuleAllow, RuleBlock, RulePoliteBlock, RulePending}, rule) {
		return fmt.Errorf("watcher %q, rule %q: want a watcher and allow, block, polite-block or pending", watcher, rule)
	}
	return nil
}

// CheckFlow returns an error unless flow names a flow: removing the bindings of "no flow"
// would remove every binding registered without one.
func CheckFlow(flow string) error {
	if flow == "" {
		return errors.New("empty flow")
	}
	return nil
}

// CheckLimit returns an error unless an expiry sweep's limit is positive.
func CheckLimit(limit int) error {
	if limit <= 0 {
		return fmt.Errorf("limit %d: must be positive", limit)
	}
	return nil
}

// CheckTTL returns an error unless a nonce record's ttl is positive.
func CheckTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("ttl %v: must be positive", ttl)
	}
	return nil
}
