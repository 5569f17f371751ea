package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/simpled/simpled/storage"
)

// runPresence checks the presence stores' contracts: publications (storage.PublishOp rule by
// rule, entity tags, order, byte-exact bodies, expiry, the sweep), subscription dialogs (put,
// replace, the CSeq condition, listing, deletion, expiry, the sweep) and authorization rules.
//
// Conventions both backends follow and the suite pins down: times come back in whole seconds
// UTC; an empty Body, Accept or RouteSet comes back nil, and so does an empty result of
// Publications or Subscriptions (Rules gives an empty, non-nil map); a malformed
// PublishOp (a new publication without Body, no NewETag, a removal without IfMatch, ExpiresAt
// not after Now), a subscription without ID and a rule that is not one of storage.Rule* are
// refused with an error that is none of the sentinels, and write nothing.
func runPresence(t *testing.T, newStore func(t *testing.T) Store) {
	t.Run("PublishNew", func(t *testing.T) { testPublishNew(t, newStore) })
	t.Run("PublishRefresh", func(t *testing.T) { testPublishRefresh(t, newStore) })
	t.Run("PublishModify", func(t *testing.T) { testPublishModify(t, newStore) })
	t.Run("PublishRemove", func(t *testing.T) { testPublishRemove(t, newStore) })
	t.Run("ETagMismatch", func(t *testing.T) { testETagMismatch(t, newStore) })
	t.Run("PublishDropsExpired", func(t *testing.T) { testPublishDropsExpired(t, newStore) })
	t.Run("PublishInvalid", func(t *testing.T) { testPublishInvalid(t, newStore) })
	t.Run("PublishLimit", func(t *testing.T) { testPublishLimit(t, newStore) })
	t.Run("PublishLimitConcurrent", func(t *testing.T) { testPublishLimitConcurrent(t, newStore) })
	t.Run("PublicationOrder", func(t *testing.T) { testPublicationOrder(t, newStore) })
	t.Run("PublicationBinaryBody", func(t *testing.T) { testPublicationBinaryBody(t, newStore) })
	t.Run("PublicationRoundTrip", func(t *testing.T) { testPublicationRoundTrip(t, newStore) })
	t.Run("PublicationLazyExpiry", func(t *testing.T) { testPublicationLazyExpiry(t, newStore) })
	t.Run("ExpirePublications", func(t *testing.T) { testExpirePublications(t, newStore) })
	t.Run("ExpireConcurrent", func(t *testing.T) { testExpirePresenceConcurrent(t, newStore) })
	t.Run("PublishConcurrent", func(t *testing.T) { testPublishConcurrent(t, newStore) })
	t.Run("PublicationIsolation", func(t *testing.T) { testPublicationIsolation(t, newStore) })

	t.Run("SubscriptionRoundTrip", func(t *testing.T) { testSubscriptionRoundTrip(t, newStore) })
	t.Run("SubscriptionReplace", func(t *testing.T) { testSubscriptionReplace(t, newStore) })
	t.Run("SubscriptionMinCSeq", func(t *testing.T) { testSubscriptionMinCSeq(t, newStore) })
	t.Run("SubscriptionNotFound", func(t *testing.T) { testSubscriptionNotFound(t, newStore) })
	t.Run("Subscriptions", func(t *testing.T) { testSubscriptions(t, newStore) })
	t.Run("DeleteSubscription", func(t *testing.T) { testDeleteSubscription(t, newStore) })
	t.Run("ExpireSubscriptions", func(t *testing.T) { testExpireSubscriptions(t, newStore) })
	t.Run("PutSubscriptionConcurrent", func(t *testing.T) { testPutSubscriptionConcurrent(t, newStore) })
	t.Run("ClaimSubscription", func(t *testing.T) { testClaimSubscription(t, newStore) })
	t.Run("ClaimSubscriptionConcurrent", func(t *testing.T) { testClaimSubscriptionConcurrent(t, newStore) })

	t.Run("Rules", func(t *testing.T) { testRules(t, newStore) })
	t.Run("Close", func(t *testing.T) { testPresenceClose(t, newStore) })
}

const (
	pidf      = "application/pidf+xml"
	publisher = "sip:alice@192.0.2.1:5060" // the Source of the suite's new publications
)

// create is a PUBLISH without SIP-If-Match at t0+now storing body under etag for exp
// seconds.
func create(t0 time.Time, now int, etag, body string, exp int) storage.PublishOp {
	return storage.PublishOp{
		Now: at(t0, now), NewETag: etag, ContentType: pidf, Body: []byte(body),
		ExpiresAt: at(t0, now+exp), Source: publisher,
	}
}

// refresh is a PUBLISH without body at t0+now renaming ifMatch to etag, for exp seconds. Its
// ContentType and Source must not be stored (a refresh keeps them).
func refresh(t0 time.Time, now int, ifMatch, etag string, exp int) storage.PublishOp {
	return storage.PublishOp{
		Now: at(t0, now), IfMatch: ifMatch, NewETag: etag, ContentType: "text/ignored",
		ExpiresAt: at(t0, now+exp), Source: "sip:refresher@192.0.2.9",
	}
}

// modify is a PUBLISH with body at t0+now replacing ifMatch by etag, for exp seconds.
func modify(t0 time.Time, now int, ifMatch, etag, body string, exp int) storage.PublishOp {
	op := create(t0, now, etag, body, exp)
	op.IfMatch = ifMatch
	op.Source = "sip:modifier@192.0.2.8"
	return op
}

// remove is a PUBLISH with Expires: 0 at t0+now for ifMatch.
func remove(t0 time.Time, now int, ifMatch string) storage.PublishOp {
	return storage.PublishOp{Now: at(t0, now), IfMatch: ifMatch, Remove: true}
}

// pub is the publication create(t0, upd, etag, body, exp-upd) stores: updated at t0+upd,
// expiring at t0+exp.
func pub(t0 time.Time, etag, body string, upd, exp int) storage.Publication {
	return storage.Publication{
		ETag: etag, ContentType: pidf, Body: []byte(body), ExpiresAt: at(t0, exp),
		UpdatedAt: at(t0, upd), Source: publisher,
	}
}

// renamed returns p under etag expiring at t0+exp: what a refresh stores.
func renamed(t0 time.Time, p storage.Publication, etag string, exp int) storage.Publication {
	p.ETag, p.ExpiresAt = etag, at(t0, exp)
	return p
}

func mustPublish(t *testing.T, s Store, aor string, op storage.PublishOp) storage.Publication {
	t.Helper()
	p, err := s.Publish(t.Context(), aor, op)
	if err != nil {
		t.Fatalf("Publish(%s, IfMatch %q, NewETag %q): %v", aor, op.IfMatch, op.NewETag, err)
	}
	return p
}

func mustPublications(t *testing.T, s Store, aor string, now time.Time) []storage.Publication {
	t.Helper()
	ps, err := s.Publications(t.Context(), aor, now)
	if err != nil {
		t.Fatalf("Publications(%s): %v", aor, err)
	}
	return ps
}

// etags returns the ETags of ps in order.
func etags(ps []storage.Publication) []string {
	return names(ps, func(p storage.Publication) string { return p.ETag })
}

// names returns the name of every item of l, in order.
func names[T any](l []T, name func(T) string) []string {
	out := make([]string, 0, len(l))
	for _, x := range l {
		out = append(out, name(x))
	}
	return out
}

// equalItems compares two lists item by item with diff; name names an item in failures. An
// empty want needs a nil got (the presence lists' convention).
func equalItems[T any](t *testing.T, what string, got, want []T, name func(T) string, diff func(got, want T) string) {
	t.Helper()
	if len(want) == 0 && got != nil {
		t.Errorf("%s: got %#v, want nil", what, got)
		return
	}
	equalList(t, what, got, want, name, diff)
}

// equalList compares two lists item by item with diff; name names an item in failures.
func equalList[T any](t *testing.T, what string, got, want []T, name func(T) string, diff func(got, want T) string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d %q, want %d %q", what, len(got), names(got, name), len(want), names(want, name))
		return
	}
	for i := range got {
		if d := diff(got[i], want[i]); d != "" {
			t.Errorf("%s[%d] (%q): %s", what, i, name(want[i]), d)
		}
	}
}

// equalPublications compares two publication lists field by field (times with Equal and in
// UTC, bodies byte by byte, an empty body only as nil).
func equalPublications(t *testing.T, what string, got, want []storage.Publication) {
	t.Helper()
	equalItems(t, what, got, want, func(p storage.Publication) string { return p.ETag }, diffPublication)
}

func diffPublication(got, want storage.Publication) string {
	d := diffTime(nil, "ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	d = diffTime(d, "UpdatedAt", got.UpdatedAt, want.UpdatedAt)
	if !bytes.Equal(got.Body, want.Body) {
		d = append(d, fmt.Sprintf("Body %q, want %q", shorten(got.Body), shorten(want.Body)))
	}
	if got.Body != nil && len(got.Body) == 0 {
		d = append(d, "empty Body not returned as nil")
	}
	got.ExpiresAt, want.ExpiresAt = time.Time{}, time.Time{}
	got.UpdatedAt, want.UpdatedAt = time.Time{}, time.Time{}
	got.Body, want.Body = nil, nil
	return diffFields(got, want, d)
}

// diffTime appends to d how got differs from want (Equal) and whether it is not in UTC.
func diffTime(d []string, name string, got, want time.Time) []string {
	if !got.Equal(want) {
		d = append(d, fmt.Sprintf("%s %v, want %v", name, got, want))
	}
	if got.Location() != time.UTC {
		d = append(d, fmt.Sprintf("%s %v not in UTC", name, got))
	}
	return d
}

// diffFields appends to d the fields of got and want (structs of one type) that differ, and
// joins the lot.
func diffFields(got, want any, d []string) string {
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range gv.NumField() {
		if g, w := gv.Field(i).Interface(), wv.Field(i).Interface(); !reflect.DeepEqual(g, w) {
			d = append(d, fmt.Sprintf("%s %#v, want %#v", gv.Type().Field(i).Name, g, w))
		}
	}
	return strings.Join(d, "; ")
}

func testPublishNew(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	equalPublications(t, "Publications(empty)", mustPublications(t, s, aor, t0), nil)

	got := mustPublish(t, s, aor, create(t0, 0, "e1", "<presence/>", 3600))
	want := pub(t0, "e1", "<presence/>", 0, 3600)
	equalPublications(t, "Publish", []storage.Publication{got}, []storage.Publication{want})
	equalPublications(t, "Publications", mustPublications(t, s, aor, t0), []storage.Publication{want})

	// A second one, later: both listed, the older first.
	got2 := mustPublish(t, s, aor, create(t0, 5, "e2", "<presence>2</presence>", 60))
	want2 := pub(t0, "e2", "<presence>2</presence>", 5, 65)
	equalPublications(t, "Publish", []storage.Publication{got2}, []storage.Publication{want2})
	equalPublications(t, "Publications", mustPublications(t, s, aor, at(t0, 5)), []storage.Publication{want, want2})

	// Mutating a returned publication, or the body given, must not change the store.
	op := create(t0, 6, "e3", "mutable", 60)
	got3 := mustPublish(t, s, aor, op)
	op.Body[0] = 'X'
	got3.Body[0] = 'Y'
	list := mustPublications(t, s, aor, at(t0, 6))
	list[0].Body[0] = 'Z'
	equalPublications(t, "after mutating copies", mustPublications(t, s, aor, at(t0, 6)),
		[]storage.Publication{want, want2, pub(t0, "e3", "mutable", 6, 66)})
}

// testPublishRefresh: a refresh (no body) keeps the body, its type, UpdatedAt and Source,
// and changes the entity tag and the expiry; the old tag is gone.
func testPublishRefresh(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	ctx := t.Context()
	s := newStore(t)
	orig := pub(t0, "e1", "<presence>on</presence>", 0, 100)
	mustPublish(t, s, aor, create(t0, 0, "e1", "<presence>on</presence>", 100))

	got := mustPublish(t, s, aor, refresh(t0, 50, "e1", "e2", 100))
	want := renamed(t0, orig, "e2", 150)
	equalPublications(t, "Publish(refresh)", []storage.Publication{got}, []storage.Publication{want})
	equalPublications(t, "Publications", mustPublications(t, s, aor, at(t0, 50)), []storage.Publication{want})
	// Live past the old expiry.
	equalPublications(t, "Publications after the old expiry", mustPublications(t, s, aor, at(t0, 120)), []storage.Publication{want})
	// The old entity tag is gone.
	if _, err := s.Publish(ctx, aor, refresh(t0, 60, "e1", "e3", 100)); !errors.Is(err, storage.ErrETagMismatch) {
		t.Fatalf("refresh of the old tag: err = %v, want ErrETagMismatch", err)
	}
	// A shorter refresh, keeping the tag.
	got = mustPublish(t, s, aor, refresh(t0, 60, "e2", "e2", 10))
	want = renamed(t0, orig, "e2", 70)
	equalPublications(t, "Publish(refresh, same tag)", []storage.Publication{got}, []storage.Publication{want})
	equalPublications(t, "Publications at +69", mustPublications(t, s, aor, at(t0, 69)), []storage.Publication{want})
	equalPublications(t, "Publications at +70", mustPublications(t, s, aor, at(t0, 70)), nil)
	// The sweep reports it once, at its last expiry.
	if ex, err := s.ExpirePublications(ctx, at(t0, 69), 10); err != nil || len(ex) != 0 {
		t.Fatalf("ExpirePublications(+69) = %+v, %v; want none", ex, err)
	}
	ex, err := s.ExpirePublications(ctx, at(t0, 70), 10)
	if err != nil || len(ex) != 1 {
		t.Fatalf("ExpirePublications(+70) = %+v, %v; want e2", ex, err)
	}
	equalPublications(t, "ExpirePublications", []storage.Publication{ex[0].Publication}, []storage.Publication{want})
}

// testPublishModify: a body replaces the body and its type, sets UpdatedAt to Now and Source
// to the op's.
func testPublishModify(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	ctx := t.Context()
	s := newStore(t)
	mustPublish(t, s, aor, create(t0, 0, "e1", "<presence>on</presence>", 100))
	other := mustPublish(t, s, aor, create(t0, 1, "o", "other device", 1000))

	op := modify(t0, 10, "e1", "e2", "<presence>away</presence>", 200)
	op.ContentType = "application/xpidf+xml"
	got := mustPublish(t, s, aor, op)
	want := storage.Publication{
		ETag: "e2", ContentType: "application/xpidf+xml", Body: []byte("<presence>away</presence>"),
		ExpiresAt: at(t0, 210), UpdatedAt: at(t0, 10), Source: op.Source,
	}
	equalPublications(t, "Publish(modify)", []storage.Publication{got}, []storage.Publication{want})
	equalPublications(t, "Publications", mustPublications(t, s, aor, at(t0, 10)), []storage.Publication{other, want})
	if _, err := s.Publish(ctx, aor, modify(t0, 11, "e1", "e3", "x", 100)); !errors.Is(err, storage.ErrETagMismatch) {
		t.Fatalf("modify of the old tag: err = %v, want ErrETagMismatch", err)
	}

	// An empty (non-nil) body is a modification to an empty body, returned as nil.
	op = modify(t0, 20, "e2", "e4", "", 200)
	got = mustPublish(t, s, aor, op)
	want = storage.Publication{ETag: "e4", ContentType: pidf, ExpiresAt: at(t0, 220), UpdatedAt: at(t0, 20), Source: op.Source}
	equalPublications(t, "Publish(empty body)", []storage.Publication{got}, []storage.Publication{want})
	equalPublications(t, "Publications", mustPublications(t, s, aor, at(t0, 20)), []storage.Publication{other, want})

	// A refresh of an empty body keeps it empty.
	got = mustPublish(t, s, aor, refresh(t0, 30, "e4", "e5", 100))
	equalPublications(t, "refresh of an empty body", []storage.Publication{got}, []storage.Publication{renamed(t0, want, "e5", 130)})
}

// testPublishRemove: a removal returns the publication as it was and deletes it.
func testPublishRemove(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	ctx := t.Context()
	s := newStore(t)
	mustPublish(t, s, aor, create(t0, 0, "e1", "one", 100))
	mustPublish(t, s, aor, create(t0, 1, "e2", "two", 100))
	mustPublish(t, s, aor, refresh(t0, 2, "e2", "e3", 50))

	got := mustPublish(t, s, aor, remove(t0, 5, "e3"))
	equalPublications(t, "Publish(remove)", []storage.Publication{got}, []storage.Publication{renamed(t0, pub(t0, "e2", "two", 1, 0), "e3", 52)})
	equalPublications(t, "Publications", mustPublications(t, s, aor, at(t0, 5)), []storage.Publication{pub(t0, "e1", "one", 0, 100)})
	if _, err := s.Publish(ctx, aor, remove(t0, 6, "e3")); !errors.Is(err, storage.ErrETagMismatch) {
		t.Fatalf("second removal: err = %v, want ErrETagMismatch", err)
	}
	got = mustPublish(t, s, aor, remove(t0, 7, "e1"))
	equalPublications(t, "Publish(remove)", []storage.Publication{got}, []storage.Publication{pub(t0, "e1", "one", 0, 100)})
	equalPublications(t, "Publications after removing all", mustPublications(t, s, aor, at(t0, 7)), nil)
	// Removed publications are not expired later.
	if ex, err := s.ExpirePublications(ctx, at(t0, 1000), 10); err != nil || len(ex) != 0 {
		t.Fatalf("ExpirePublications = %+v, %v; want none", ex, err)
	}
	// The AOR takes publications again.
	mustPublish(t, s, aor, create(t0, 8, "e1", "again", 100))
}

// testETagMismatch: an IfMatch naming no live publication fails every kind of op with
// ErrETagMismatch, and nothing is written (not even the drop of expired publications).
func testETagMismatch(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	now := at(t0, 10)
	tags := []struct{ name, etag string }{
		{"unknown", "nope"},
		{"removed", "gone"},
		{"expired at Now", "short"},
		{"other AOR's", "bobs"},
		{"refreshed away", "x"},
	}
	ops := []struct {
		name string
		op   func(ifMatch string) storage.PublishOp
	}{
		{"refresh", func(m string) storage.PublishOp { return refresh(t0, 10, m, "new", 100) }},
		{"refresh keeping the tag", func(m string) storage.PublishOp { return refresh(t0, 10, m, m, 100) }},
		{"modify", func(m string) storage.PublishOp { return modify(t0, 10, m, "new", "body", 100) }},
		{"remove", func(m string) storage.PublishOp { return remove(t0, 10, m) }},
	}
	for _, tag := range tags {
		for _, o := range ops {
			t.Run(tag.name+"/"+o.name, func(t *testing.T) {
				s := newStore(t)
				ctx := t.Context()
				mustPublish(t, s, aor, create(t0, 0, "live", "live", 600))
				mustPublish(t, s, aor, create(t0, 0, "short", "short", 10)) // expires at Now
				mustPublish(t, s, aor, create(t0, 0, "gone", "gone", 600))
				mustPublish(t, s, aor, remove(t0, 1, "gone"))
				mustPublish(t, s, aor, create(t0, 0, "x", "x", 600))
				mustPublish(t, s, aor, refresh(t0, 1, "x", "renamed-x", 600))
				mustPublish(t, s, "bob@example.com", create(t0, 0, "bobs", "bob's", 600))
				before := mustPublications(t, s, aor, at(t0, 9))
				_, err := s.Publish(ctx, aor, o.op(tag.etag))
				if !errors.Is(err, storage.ErrETagMismatch) {
					t.Fatalf("err = %v, want ErrETagMismatch", err)
				}
				equalPublications(t, "after ErrETagMismatch", mustPublications(t, s, aor, at(t0, 9)), before)
				if got := etags(mustPublications(t, s, "bob@example.com", now)); !slices.Equal(got, []string{"bobs"}) {
					t.Errorf("bob's publications = %q", got)
				}
				// Nothing was written: the expired publication is still there for the sweep.
				ex, err := s.ExpirePublications(ctx, now, 10)
				if err != nil || len(ex) != 1 || ex[0].AOR != aor || ex[0].Publication.ETag != "short" {
					t.Fatalf("ExpirePublications after the error = %+v, %v; want short", ex, err)
				}
			})
		}
	}
}

// testPublishDropsExpired: a successful Publish first drops the AOR's publications expired
// at Now (so the sweep does not report them later), and only that AOR's.
func testPublishDropsExpired(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	ctx := t.Context()
	for _, op := range []struct {
		name string
		op   storage.PublishOp
	}{
		{"new", create(t0, 20, "new", "new", 100)},
		{"refresh", refresh(t0, 20, "long", "long2", 100)},
		{"modify", modify(t0, 20, "long", "long2", "b", 100)},
		{"remove", remove(t0, 20, "long")},
	} {
		t.Run(op.name, func(t *testing.T) {
			s := newStore(t)
			mustPublish(t, s, aor, create(t0, 0, "short", "short", 10))
			mustPublish(t, s, aor, create(t0, 0, "edge", "edge", 20)) // expires at exactly Now
			mustPublish(t, s, aor, create(t0, 0, "long", "long", 600))
			mustPublish(t, s, "bob@example.com", create(t0, 0, "bobs", "bob's", 10))
			mustPublish(t, s, aor, op.op)
			// Gone even at an earlier now.
			for _, p := range mustPublications(t, s, aor, at(t0, 5)) {
				if p.ETag == "short" || p.ETag == "edge" {
					t.Errorf("%s still stored after a Publish at +20", p.ETag)
				}
			}
			ex, err := s.ExpirePublications(ctx, at(t0, 30), 10)
			if err != nil || len(ex) != 1 || ex[0].AOR != "bob@example.com" {
				t.Fatalf("ExpirePublications = %+v, %v; want only bob's", ex, err)
			}
		})
	}
}

// testPublishInvalid: malformed ops are refused, with no sentinel, and write nothing.
// limited returns op with MaxPublications n.
func limited(op storage.PublishOp, n int) storage.PublishOp {
	op.MaxPublications = n
	return op
}

func testPublishLimit(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	// Each case starts from a and b live until +600 and short, expired at +10 (Now).
	setup := func(t *testing.T) Store {
		s := newStore(t)
		mustPublish(t, s, aor, create(t0, 0, "a", "a", 600))
		mustPublish(t, s, aor, create(t0, 1, "b", "b", 599))
		mustPublish(t, s, aor, create(t0, 0, "short", "short", 10))
		return s
	}
	a, b := pub(t0, "a", "a", 0, 600), pub(t0, "b", "b", 1, 600)
	t.Run("limit reached", func(t *testing.T) {
		s := setup(t)
		ctx := t.Context()
		for _, n := range []int{1, 2} {
			_, err := s.Publish(ctx, aor, limited(create(t0, 10, "c", "c", 100), n))
			if !errors.Is(err, storage.ErrTooManyPublications) {
				t.Fatalf("MaxPublications %d: err = %v, want ErrTooManyPublications", n, err)
			}
		}
		// Nothing written: the expired one is still there for the sweep, c is nowhere.
		equalPublications(t, "after ErrTooManyPublications", mustPublications(t, s, aor, at(t0, 9)),
			[]storage.Publication{a, pub(t0, "short", "short", 0, 10), b})
		ex, err := s.ExpirePublications(ctx, at(t0, 10), 10)
		if err != nil || len(ex) != 1 || ex[0].Publication.ETag != "short" {
			t.Fatalf("ExpirePublications = %+v, %v; want short", ex, err)
		}
		if ex, err := s.ExpirePublications(ctx, at(t0, 200), 10); err != nil || len(ex) != 0 {
			t.Fatalf("ExpirePublications(+200) = %+v, %v; want none (c was never stored)", ex, err)
		}
	})
	t.Run("expired ones do not count", func(t *testing.T) {
		s := setup(t)
		c := mustPublish(t, s, aor, limited(create(t0, 10, "c", "c", 100), 3))
		equalPublications(t, "after the new one", mustPublications(t, s, aor, at(t0, 10)), []storage.Publication{a, b, c})
		if _, err := s.Publish(t.Context(), aor, limited(create(t0, 10, "d", "d", 100), 3)); !errors.Is(err, storage.ErrTooManyPublications) {
			t.Fatalf("fourth publication: err = %v, want ErrTooManyPublications", err)
		}
	})
	t.Run("modify, refresh, remove at the limit", func(t *testing.T) {
		s := setup(t)
		a2 := mustPublish(t, s, aor, limited(modify(t0, 10, "a", "a2", "a2", 600), 1))
		b2 := mustPublish(t, s, aor, limited(refresh(t0, 10, "b", "b2", 600), 1))
		equalPublications(t, "modified and refreshed", mustPublications(t, s, aor, at(t0, 10)), []storage.Publication{b2, a2})
		mustPublish(t, s, aor, limited(remove(t0, 10, "a2"), 1))
		// One live publication left: a limit of 2 admits one more, not two.
		c := mustPublish(t, s, aor, limited(create(t0, 10, "c", "c", 100), 2))
		if _, err := s.Publish(t.Context(), aor, limited(create(t0, 10, "d", "d", 100), 2)); !errors.Is(err, storage.ErrTooManyPublications) {
			t.Fatalf("third publication: err = %v, want ErrTooManyPublications", err)
		}
		equalPublications(t, "at the end", mustPublications(t, s, aor, at(t0, 10)), []storage.Publication{b2, c})
	})
	t.Run("a live entity tag again", func(t *testing.T) {
		// A new publication under a live entity tag (a retried op) replaces it: not counted.
		s := setup(t)
		b2 := mustPublish(t, s, aor, limited(create(t0, 10, "b", "b again", 100), 2))
		equalPublications(t, "replaced", mustPublications(t, s, aor, at(t0, 10)), []storage.Publication{a, b2})
	})
	t.Run("no bound", func(t *testing.T) {
		s := setup(t)
		for i := range 5 {
			mustPublish(t, s, aor, create(t0, 10, fmt.Sprintf("n%d", i), "n", 100))
		}
		if got := mustPublications(t, s, aor, at(t0, 10)); len(got) != 7 {
			t.Fatalf("%d publications, want 7", len(got))
		}
	})
}

// testPublishLimitConcurrent: new publications racing for the last places get exactly as many
// as MaxPublications allows.
func testPublishLimitConcurrent(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	const workers, limit = 16, 5
	mustPublish(t, s, aor, create(t0, 0, "first", "first", 600))
	var (
		wg   sync.WaitGroup
		wins atomic.Int32
		errs = make(chan error, workers)
	)
	for w := range workers {
		wg.Go(func() {
			_, err := s.Publish(t.Context(), aor, limited(create(t0, 1, fmt.Sprintf("w%d", w), "w", 600), limit))
			switch {
			case err == nil:
				wins.Add(1)
			case !errors.Is(err, storage.ErrTooManyPublications):
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := wins.Load(); n != limit-1 {
		t.Errorf("%d of %d racing new publications stored, want %d", n, workers, limit-1)
	}
	if got := mustPublications(t, s, aor, at(t0, 1)); len(got) != limit {
		t.Errorf("%d publications %q, want %d", len(got), etags(got), limit)
	}
}

func testPublishInvalid(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	mustPublish(t, s, aor, create(t0, 0, "e1", "x", 100))
	before := mustPublications(t, s, aor, t0)
	noBody := create(t0, 0, "e2", "", 100)
	noBody.Body = nil
	noTag := modify(t0, 0, "e1", "", "y", 100)
	noTagRefresh := refresh(t0, 0, "e1", "", 100)
	removeNothing := remove(t0, 0, "")
	expired := modify(t0, 0, "e1", "e3", "y", 0)
	past := create(t0, 0, "e4", "y", -5)
	for name, op := range map[string]storage.PublishOp{
		"new without body": noBody, "modify without NewETag": noTag, "refresh without NewETag": noTagRefresh,
		"remove without IfMatch": removeNothing, "ExpiresAt at Now": expired, "ExpiresAt before Now": past,
	} {
		_, err := s.Publish(t.Context(), aor, op)
		if err == nil || errors.Is(err, storage.ErrETagMismatch) || errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s: err = %v, want a plain error", name, err)
		}
	}
	equalPublications(t, "after refused ops", mustPublications(t, s, aor, t0), before)
}

// testPublicationOrder: oldest UpdatedAt first, ties by ETag (byte order); a refresh keeps
// a publication's place, a modification moves it last.
func testPublicationOrder(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	for i, etag := range []string{"b", "a", "B", "aa", "a\x00", "é"} {
		mustPublish(t, s, aor, create(t0, i/3, etag, etag, 600))
	}
	mustPublish(t, s, aor, create(t0, -5, "z", "oldest", 600)) // Now in the past: older
	order := func(now int, want ...string) {
		t.Helper()
		if got := etags(mustPublications(t, s, aor, at(t0, now))); !slices.Equal(got, want) {
			t.Fatalf("order at +%d = %q, want %q", now, got, want)
		}
	}
	order(1, "z", "B", "a", "b", "a\x00", "aa", "é")
	mustPublish(t, s, aor, refresh(t0, 2, "b", "0", 600)) // keeps UpdatedAt t0: sorts by its new tag
	order(2, "z", "0", "B", "a", "a\x00", "aa", "é")
	mustPublish(t, s, aor, modify(t0, 3, "z", "y", "new", 600)) // UpdatedAt +3: last
	order(3, "0", "B", "a", "a\x00", "aa", "é", "y")
}

// testPublicationBinaryBody: bodies are bytes, returned exactly by Publish, Publications, a
// refresh and the sweep.
func testPublicationBinaryBody(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	bodies := []struct {
		name string
		body []byte
	}{
		{"NUL bytes", []byte("\x00\x00a\x00")},
		{"every byte value", all},
		{"invalid UTF-8", []byte("\xff\xfe\xc3\x28 \xed\xa0\x80")},
		{"leading newline and JSON", []byte("\n{\"expires_at\":1}\n\n")},
		{"header-like", []byte(`{"expires_at":99,"content_type":"x"}` + "\n" + `{"expires_at":1}`)},
		{"CRLF only", []byte("\r\n")},
		{"large", bytes.Repeat([]byte("\x00\xff\n\r{\"}\x80<tuple/>"), 20000)},
		{"empty", []byte{}},
	}
	s := newStore(t)
	var want []storage.Publication
	for i, b := range bodies {
		op := create(t0, 0, fmt.Sprintf("e%d", i), "", 600)
		op.Body = b.body
		p := pub(t0, op.NewETag, "", 0, 600)
		if len(b.body) > 0 {
			p.Body = b.body
		} else {
			p.Body = nil
		}
		want = append(want, p)
		equalPublications(t, b.name, []storage.Publication{mustPublish(t, s, aor, op)}, want[i:i+1])
	}
	equalPublications(t, "Publications", mustPublications(t, s, aor, t0), want)
	// A refresh rewrites the stored value's expiry, and nothing else.
	for i := range want {
		got := mustPublish(t, s, aor, refresh(t0, 1, want[i].ETag, fmt.Sprintf("r%d", i), 99))
		want[i] = renamed(t0, want[i], fmt.Sprintf("r%d", i), 100)
		equalPublications(t, "refresh "+bodies[i].name, []storage.Publication{got}, want[i:i+1])
	}
	equalPublications(t, "Publications after refreshes", mustPublications(t, s, aor, at(t0, 1)), want)
	ex, err := s.ExpirePublications(t.Context(), at(t0, 100), 100)
	if err != nil || len(ex) != len(want) {
		t.Fatalf("ExpirePublications = %d, %v; want %d", len(ex), err, len(want))
	}
	got := make([]storage.Publication, 0, len(ex))
	for _, e := range ex {
		got = append(got, e.Publication)
	}
	slices.SortFunc(got, func(a, b storage.Publication) int { return strings.Compare(a.ETag, b.ETag) })
	equalPublications(t, "ExpirePublications", got, want)
}

// testPublicationRoundTrip: every field with odd values, sub-second times in another zone,
// under AORs and tags with the characters the Redis keys and index use.
func testPublicationRoundTrip(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	zone := time.FixedZone("X", 3600)
	op := storage.PublishOp{
		Now:         t0.Add(400 * time.Millisecond).In(zone),
		NewETag:     `e|t{a}g%7C "q" ÄÖÜ`,
		ContentType: `application/pidf+xml;charset="utf-8"`,
		Body:        []byte("<?xml version=\"1.0\"?>\n<presence entity=\"pres:a@b\">日本</presence>\n"),
		ExpiresAt:   at(t0, 3600).Add(900 * time.Millisecond).In(zone),
		Source:      `"Alice" <sip:alice@[2001:db8::1]:5060;transport=tls>|x`,
	}
	want := storage.Publication{
		ETag: op.NewETag, ContentType: op.ContentType, Body: op.Body, ExpiresAt: at(t0, 3600),
		UpdatedAt: t0, Source: op.Source,
	}
	noSource := create(t0, 0, "plain", "b", 60)
	noSource.Source, noSource.ContentType = "", ""
	wantPlain := pub(t0, "plain", "b", 0, 60)
	wantPlain.Source, wantPlain.ContentType = "", ""
	for _, a := range []string{aor, "we|ird}{@exämple.com", "{}", "100%|%7C@x"} {
		t.Run(a, func(t *testing.T) {
			s := newStore(t)
			equalPublications(t, "Publish", []storage.Publication{mustPublish(t, s, a, op)}, []storage.Publication{want})
			mustPublish(t, s, a, noSource)
			// Same UpdatedAt: by ETag ("e|..." < "plain").
			equalPublications(t, "Publications", mustPublications(t, s, a, t0), []storage.Publication{want, wantPlain})
			ex, err := s.ExpirePublications(t.Context(), at(t0, 4000), 10)
			if err != nil || len(ex) != 2 || ex[0].AOR != a || ex[1].AOR != a {
				t.Fatalf("ExpirePublications = %+v, %v; want both of %s", ex, err, a)
			}
			// Earliest expiry first.
			equalPublications(t, "ExpirePublications", []storage.Publication{ex[0].Publication, ex[1].Publication}, []storage.Publication{wantPlain, want})
		})
	}
}

// testPublicationLazyExpiry: a publication is live while now < ExpiresAt, whether or not it
// was swept.
func testPublicationLazyExpiry(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	a := mustPublish(t, s, aor, create(t0, 0, "a", "a", 10))
	b := mustPublish(t, s, aor, create(t0, 0, "b", "b", 20))
	equalPublications(t, "at +9", mustPublications(t, s, aor, at(t0, 9)), []storage.Publication{a, b})
	equalPublications(t, "at +10", mustPublications(t, s, aor, at(t0, 10)), []storage.Publication{b})
	equalPublications(t, "at +20", mustPublications(t, s, aor, at(t0, 20)), nil)
	// Reads drop nothing: an earlier now still sees both.
	equalPublications(t, "at +0", mustPublications(t, s, aor, t0), []storage.Publication{a, b})
}

// sweepCheck drives one kind's expiry sweep and checks every item it returns: expected (in
// want, by "aor|id"), not returned before, expired at the sweep's now, and equal to what is
// expected.
type sweepCheck[V any] struct {
	t       *testing.T
	sweep   func(now time.Time, limit int) (ids []string, items []V, err error)
	diff    func(got, want V) string
	expires func(V) time.Time
	want    map[string]V
	seen    map[string]bool
}

// run sweeps once and returns how many items came back.
func (c *sweepCheck[V]) run(now time.Time, limit int) int {
	c.t.Helper()
	ids, items, err := c.sweep(now, limit)
	if err != nil {
		c.t.Fatalf("sweep: %v", err)
	}
	if len(items) > limit {
		c.t.Fatalf("sweep returned %d > limit %d", len(items), limit)
	}
	for i, v := range items {
		id := ids[i]
		if c.seen[id] {
			c.t.Fatalf("%s returned twice", id)
		}
		c.seen[id] = true
		w, ok := c.want[id]
		if !ok {
			c.t.Fatalf("sweep returned %s, which is not expected", id)
		}
		if c.expires(v).After(now) {
			c.t.Fatalf("%s returned at %v but expires %v", id, now, c.expires(v))
		}
		if d := c.diff(v, w); d != "" {
			c.t.Fatalf("%s: %s", id, d)
		}
	}
	return len(items)
}

// batches sweeps at now until a sweep returns fewer than limit items and returns the count
// of each sweep.
func (c *sweepCheck[V]) batches(now time.Time, limit int) []int {
	c.t.Helper()
	var counts []int
	for {
		n := c.run(now, limit)
		counts = append(counts, n)
		if n < limit {
			return counts
		}
	}
}

// keyed adapts an expiry sweep (ExpirePublications, ExpireSubscriptions) to sweepCheck:
// each removed item with its "aor|id".
func keyed[E, V any](t *testing.T, sweep func(ctx context.Context, now time.Time, limit int) ([]E, error),
	item func(E) (aor, id string, v V)) func(now time.Time, limit int) ([]string, []V, error) {
	return func(now time.Time, limit int) ([]string, []V, error) {
		ex, err := sweep(t.Context(), now, limit)
		var ids []string
		var vs []V
		for _, e := range ex {
			aor, id, v := item(e)
			ids, vs = append(ids, aor+"|"+id), append(vs, v)
		}
		return ids, vs, err
	}
}

// basics checks that a limit of 0 is refused and that nothing is due at now.
func (c *sweepCheck[V]) basics(now time.Time) {
	c.t.Helper()
	if _, _, err := c.sweep(now, 0); err == nil {
		c.t.Errorf("sweep with limit 0 succeeded")
	}
	if n := c.run(now, 10); n != 0 {
		c.t.Fatalf("sweep at %v returned %d, want none", now, n)
	}
}

// drain sweeps at now until nothing is left and checks that every expected item came back.
func (c *sweepCheck[V]) drain(now time.Time, limit int) {
	c.t.Helper()
	c.batches(now, limit)
	if len(c.seen) != len(c.want) {
		c.t.Fatalf("swept %d items, want %d", len(c.seen), len(c.want))
	}
}

// expiredPublications is ExpirePublications for sweepCheck.
func expiredPublications(t *testing.T, s Store) func(now time.Time, limit int) ([]string, []storage.Publication, error) {
	return keyed(t, s.ExpirePublications, func(e storage.ExpiredPublication) (string, string, storage.Publication) {
		return e.AOR, e.Publication.ETag, e.Publication
	})
}

// expiredSubscriptions is ExpireSubscriptions for sweepCheck.
func expiredSubscriptions(t *testing.T, s Store) func(now time.Time, limit int) ([]string, []storage.Subscription, error) {
	return keyed(t, s.ExpireSubscriptions, func(e storage.ExpiredSubscription) (string, string, storage.Subscription) {
		return e.AOR, e.Subscription.ID, e.Subscription
	})
}

// testExpirePublications: each expired publication once, limit respected, removed,
// refreshed and modified ones not returned under their old tags.
func testExpirePublications(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	want := map[string]storage.Publication{} // aor|etag → publication expected from the sweep
	c := &sweepCheck[storage.Publication]{
		t: t, sweep: expiredPublications(t, s), diff: diffPublication, want: want, seen: map[string]bool{},
		expires: func(p storage.Publication) time.Time { return p.ExpiresAt },
	}
	c.basics(t0)
	user := func(i int) string { return fmt.Sprintf("user%d@example.com", i%5) }
	for i := range 12 {
		etag := fmt.Sprintf("p%d", i)
		want[user(i)+"|"+etag] = mustPublish(t, s, user(i), create(t0, 0, etag, "body "+etag, 10+i)) // expire t0+10..t0+21
	}
	live := mustPublish(t, s, user(0), create(t0, 0, "live", "live", 1000))
	mustPublish(t, s, user(1), remove(t0, 5, "p1"))
	delete(want, user(1)+"|p1")
	refreshed := mustPublish(t, s, user(2), refresh(t0, 5, "p2", "p2r", 1000))
	delete(want, user(2)+"|p2")
	short := mustPublish(t, s, user(3), modify(t0, 5, "p3", "p3s", "short", 1)) // expires at t0+6
	delete(want, user(3)+"|p3")
	want[user(3)+"|p3s"] = short

	if n := c.run(at(t0, 5), 100); n != 0 {
		t.Fatalf("ExpirePublications(+5) returned %d, want none", n)
	}
	if n := c.run(at(t0, 6), 100); n != 1 || !c.seen[user(3)+"|p3s"] {
		t.Fatalf("ExpirePublications(+6) returned %d (%v), want the shortened p3s", n, c.seen)
	}
	// At +15: p0, p4, p5 (p1 removed, p2 refreshed, p3 modified), in batches of 2: 2, 1.
	if counts := c.batches(at(t0, 15), 2); !slices.Equal(counts, []int{2, 1}) {
		t.Fatalf("batches at +15 = %v, want [2 1] (%v)", counts, c.seen)
	}
	c.drain(at(t0, 100), 3)
	equalPublications(t, "user0 after the sweeps", mustPublications(t, s, user(0), at(t0, 100)), []storage.Publication{live})
	equalPublications(t, "user2 after the sweeps", mustPublications(t, s, user(2), at(t0, 100)), []storage.Publication{refreshed})
}

// testExpirePresenceConcurrent: sweepers racing on one store return each publication and
// each subscription once in total, the two kinds swept at the same time.
func testExpirePresenceConcurrent(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	const aors, per = 20, 5
	for i := range aors {
		a := fmt.Sprintf("u%d@example.com", i)
		for j := range per {
			mustPublish(t, s, a, create(t0, 0, fmt.Sprintf("e%d", j), "x", 1+j))
			mustPut(t, s, subscription(t0, a, fmt.Sprintf("s%d", j), 1, 0, 1+j), 0)
		}
	}
	sweeps := slices.Repeat([]Sweep{PublicationSweep(s), SubscriptionSweep(s)}, 8)
	SweptOnce(t, at(t0, 10), 7, 2*aors*per, sweeps...)
}

// testPublishConcurrent: Publish is atomic: of the refreshes, modifications and removals
// racing for one entity tag exactly one wins, the others fail with ErrETagMismatch.
func testPublishConcurrent(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	const workers, rounds = 8, 10
	cur := mustPublish(t, s, aor, create(t0, 0, "r0", "start", 600)).ETag
	for r := range rounds {
		var (
			wg     sync.WaitGroup
			wins   atomic.Int32
			winner atomic.Value
			errs   = make(chan error, workers)
		)
		for w := range workers {
			wg.Go(func() {
				next := fmt.Sprintf("r%d-w%d", r+1, w)
				op := refresh(t0, r, cur, next, 600)
				if w%2 == 1 {
					op = modify(t0, r, cur, next, next, 600)
				}
				_, err := s.Publish(t.Context(), aor, op)
				switch {
				case err == nil:
					wins.Add(1)
					winner.Store(next)
				case !errors.Is(err, storage.ErrETagMismatch):
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", r, err)
		}
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d of %d racing ops on one tag succeeded, want 1", r, n, workers)
		}
		cur = winner.Load().(string)
		if got := etags(mustPublications(t, s, aor, at(t0, r))); !slices.Equal(got, []string{cur}) {
			t.Fatalf("round %d: publications %q, want [%s]", r, got, cur)
		}
	}
	// Racing removals: one returns the publication.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			if _, err := s.Publish(t.Context(), aor, remove(t0, rounds, cur)); err == nil {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Fatalf("%d racing removals succeeded, want 1", n)
	}
}

// testPublicationIsolation: one AOR's publications never touch another's, whatever the AOR's
// characters; the same entity tag may exist under several AORs.
func testPublicationIsolation(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	ctx := t.Context()
	s := newStore(t)
	aors := []string{aor, "bob@example.com", "{alice@example.com}", "alice@example.com|x", "al%7Cice@example.com"}
	for _, a := range aors {
		mustPublish(t, s, a, create(t0, 0, "same", a, 10))
		mustPublish(t, s, a, create(t0, 0, "other", a, 20))
	}
	mustPublish(t, s, aors[1], remove(t0, 1, "same"))
	mustPublish(t, s, aors[2], refresh(t0, 1, "same", "same2", 100))
	if _, err := s.Publish(ctx, aors[3], refresh(t0, 1, "same2", "x", 100)); !errors.Is(err, storage.ErrETagMismatch) {
		t.Fatalf("another AOR's tag: err = %v, want ErrETagMismatch", err)
	}
	for _, a := range aors {
		want := []string{"other", "same"}
		switch a {
		case aors[1]:
			want = []string{"other"}
		case aors[2]:
			want = []string{"other", "same2"}
		}
		ps := mustPublications(t, s, a, at(t0, 1))
		if got := etags(ps); !slices.Equal(got, want) {
			t.Errorf("%s: publications %q, want %q", a, got, want)
		}
		for _, p := range ps {
			if string(p.Body) != a {
				t.Errorf("%s: publication %s holds %q", a, p.ETag, p.Body)
			}
		}
	}
	ex, err := s.ExpirePublications(ctx, at(t0, 50), 100)
	if err != nil {
		t.Fatalf("ExpirePublications: %v", err)
	}
	for _, e := range ex {
		if string(e.Publication.Body) != e.AOR {
			t.Errorf("publication of %s reported for %s", e.Publication.Body, e.AOR)
		}
	}
	if len(ex) != 2*len(aors)-2 {
		t.Errorf("ExpirePublications returned %d, want %d", len(ex), 2*len(aors)-2)
	}
}

// subscription builds a subscription id of aor created at t0+created for exp seconds.
func subscription(t0 time.Time, aor, id string, cseq uint32, created, exp int) storage.Subscription {
	return storage.Subscription{
		ID: id, AOR: aor, Event: "presence", Watcher: "bob@example.com",
		WatcherURI: "sip:bob@example.com", CallID: "call-" + id, FromTag: "from-" + id,
		Accept: []string{pidf}, RemoteTarget: "sip:bob@192.0.2.2:5060", RemoteCSeq: cseq,
		State: storage.SubActive, ExpiresAt: at(t0, created+exp), CreatedAt: at(t0, created),
	}
}

func mustPut(t *testing.T, s Store, sub storage.Subscription, minCSeq uint32) {
	t.Helper()
	if err := s.PutSubscription(t.Context(), sub, minCSeq); err != nil {
		t.Fatalf("PutSubscription(%s, %q, %d): %v", sub.AOR, sub.ID, minCSeq, err)
	}
}

func mustSubscription(t *testing.T, s Store, aor, id string, now time.Time) storage.Subscription {
	t.Helper()
	sub, err := s.Subscription(t.Context(), aor, id, now)
	if err != nil {
		t.Fatalf("Subscription(%s, %q): %v", aor, id, err)
	}
	return sub
}

func mustSubscriptions(t *testing.T, s Store, aor string, now time.Time) []storage.Subscription {
	t.Helper()
	subs, err := s.Subscriptions(t.Context(), aor, now)
	if err != nil {
		t.Fatalf("Subscriptions(%s): %v", aor, err)
	}
	return subs
}

// ids returns the IDs of subs in order.
func ids(subs []storage.Subscription) []string {
	return names(subs, func(s storage.Subscription) string { return s.ID })
}

// equalSubscriptions compares two subscription lists field by field (times with Equal and in
// UTC, empty lists only as nil).
func equalSubscriptions(t *testing.T, what string, got, want []storage.Subscription) {
	t.Helper()
	equalItems(t, what, got, want, func(s storage.Subscription) string { return s.ID }, diffSubscription)
}

func diffSubscription(got, want storage.Subscription) string {
	d := diffTime(nil, "ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	d = diffTime(d, "CreatedAt", got.CreatedAt, want.CreatedAt)
	if got.Accept != nil && len(got.Accept) == 0 || got.RouteSet != nil && len(got.RouteSet) == 0 {
		d = append(d, "empty Accept or RouteSet not returned as nil")
	}
	got.ExpiresAt, want.ExpiresAt = time.Time{}, time.Time{}
	got.CreatedAt, want.CreatedAt = time.Time{}, time.Time{}
	if len(want.Accept) == 0 {
		want.Accept = nil
	}
	if len(want.RouteSet) == 0 {
		want.RouteSet = nil
	}
	return diffFields(got, want, d)
}

// testSubscriptionRoundTrip stores subscriptions with every field set and odd values, and
// with empty lists, under AORs and IDs with the characters the Redis keys and index use.
func testSubscriptionRoundTrip(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	zone := time.FixedZone("X", -7200)
	for _, a := range []string{aor, "we|ird}{@exämple.com", "{}", "100%|%7C@x"} {
		t.Run(a, func(t *testing.T) {
			s := newStore(t)
			full := storage.Subscription{
				ID: `to-tag|{x}%7C "q"`, AOR: a, Event: "presence.winfo", Watcher: "bob@exämple.com",
				WatcherURI: "sip:bob@exämple.com;transport=tcp", WatcherName: `Bob "B" 日本`,
				CallID: `a84b4c76e66710@pc33 "q" \ |`, FromTag: "1928301774",
				Accept:       []string{"application/watcherinfo+xml", "multipart/related"},
				RouteSet:     []string{"<sip:p1.example.com;lr>", "<sip:p2.example.com;lr;ob>"},
				RemoteTarget: "sip:bob@[2001:db8::2]:5061;transport=tls", RemoteCSeq: 1<<32 - 1,
				Transport: "wss", Source: "[2001:db8::2]:50000", State: storage.SubPending,
				ExpiresAt: at(t0, 3600).Add(900 * time.Millisecond).In(zone),
				CreatedAt: t0.Add(400 * time.Millisecond).In(zone), Node: "node-1",
			}
			sparse := storage.Subscription{
				ID: "sparse", AOR: a, Accept: []string{}, ExpiresAt: at(t0, 60), CreatedAt: time.Unix(0, 0),
			}
			mustPut(t, s, full, 0)
			mustPut(t, s, sparse, 0)
			wantFull := full
			wantFull.ExpiresAt, wantFull.CreatedAt = at(t0, 3600), t0
			wantFull.Accept, wantFull.RouteSet = slices.Clone(full.Accept), slices.Clone(full.RouteSet)
			wantSparse := sparse
			wantSparse.CreatedAt = time.Unix(0, 0).UTC()
			want := []storage.Subscription{wantSparse, wantFull} // by ID: "s" < "t"
			equalSubscriptions(t, "Subscription", []storage.Subscription{mustSubscription(t, s, a, full.ID, t0)}, want[1:])
			equalSubscriptions(t, "Subscriptions", mustSubscriptions(t, s, a, t0), want)

			// Mutating a returned subscription, or the one given, must not change the store.
			got := mustSubscription(t, s, a, full.ID, t0)
			got.Accept[0], got.RouteSet[0] = "mutated", "mutated"
			list := mustSubscriptions(t, s, a, t0)
			list[1].Accept[0] = "mutated"
			full.Accept[0], full.RouteSet[0] = "mutated", "mutated"
			equalSubscriptions(t, "after mutating copies", mustSubscriptions(t, s, a, t0), want)

			ex, err := s.ExpireSubscriptions(t.Context(), at(t0, 4000), 10)
			if err != nil || len(ex) != 2 || ex[0].AOR != a || ex[1].AOR != a {
				t.Fatalf("ExpireSubscriptions = %+v, %v; want both of %s", ex, err, a)
			}
			// Earliest expiry first.
			equalSubscriptions(t, "ExpireSubscriptions", []storage.Subscription{ex[0].Subscription, ex[1].Subscription}, want)
		})
	}
}

// testSubscriptionReplace: PutSubscription replaces the stored subscription whole.
func testSubscriptionReplace(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	full := subscription(t0, aor, "s1", 1, 0, 600)
	full.RouteSet, full.WatcherName, full.Node, full.Transport = []string{"<sip:p@h;lr>"}, "Bob", "n1", "tcp"
	mustPut(t, s, full, 0)
	next := subscription(t0, aor, "s1", 2, 0, 60)
	next.State, next.Accept = storage.SubPending, nil
	mustPut(t, s, next, 2)
	equalSubscriptions(t, "after replace", mustSubscriptions(t, s, aor, t0), []storage.Subscription{next})
	// The sweep sees the new expiry only.
	if ex, err := s.ExpireSubscriptions(t.Context(), at(t0, 59), 10); err != nil || len(ex) != 0 {
		t.Fatalf("ExpireSubscriptions(+59) = %+v, %v; want none", ex, err)
	}
	ex, err := s.ExpireSubscriptions(t.Context(), at(t0, 60), 10)
	if err != nil || len(ex) != 1 {
		t.Fatalf("ExpireSubscriptions(+60) = %+v, %v; want the replaced one", ex, err)
	}
	equalSubscriptions(t, "ExpireSubscriptions", []storage.Subscription{ex[0].Subscription}, []storage.Subscription{next})
	if ex, err := s.ExpireSubscriptions(t.Context(), at(t0, 1000), 10); err != nil || len(ex) != 0 {
		t.Fatalf("ExpireSubscriptions(+1000) = %+v, %v; want none", ex, err)
	}
}

// testSubscriptionMinCSeq: with minCSeq > 0 the write happens only if the stored
// subscription's RemoteCSeq is below it; the stored one counts expired or not.
func testSubscriptionMinCSeq(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	const id = "s1"
	tests := []struct {
		name    string
		stored  []storage.Subscription
		put     storage.Subscription
		minCSeq uint32
		stale   bool
	}{
		{name: "unconditional, lower CSeq", stored: []storage.Subscription{subscription(t0, aor, id, 5, 0, 600)}, put: subscription(t0, aor, id, 3, 1, 600)},
		{name: "equal is stale", stored: []storage.Subscription{subscription(t0, aor, id, 5, 0, 600)}, put: subscription(t0, aor, id, 5, 1, 900), minCSeq: 5, stale: true},
		{name: "lower is stale", stored: []storage.Subscription{subscription(t0, aor, id, 5, 0, 600)}, put: subscription(t0, aor, id, 4, 1, 900), minCSeq: 4, stale: true},
		{name: "higher", stored: []storage.Subscription{subscription(t0, aor, id, 5, 0, 600)}, put: subscription(t0, aor, id, 6, 1, 900), minCSeq: 6},
		{name: "max uint32 stored", stored: []storage.Subscription{subscription(t0, aor, id, 1<<32-1, 0, 600)}, put: subscription(t0, aor, id, 1<<32-1, 1, 900), minCSeq: 1<<32 - 1, stale: true},
		{name: "none stored", put: subscription(t0, aor, id, 7, 1, 900), minCSeq: 7},
		{name: "expired stored still counts", stored: []storage.Subscription{subscription(t0, aor, id, 5, 0, 1)}, put: subscription(t0, aor, id, 5, 1, 900), minCSeq: 5, stale: true},
		{name: "another AOR's ID does not count", stored: []storage.Subscription{subscription(t0, "bob@example.com", id, 9, 0, 600)}, put: subscription(t0, aor, id, 2, 1, 900), minCSeq: 2},
		{name: "another ID does not count", stored: []storage.Subscription{subscription(t0, aor, "s2", 9, 0, 600)}, put: subscription(t0, aor, id, 2, 1, 900), minCSeq: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			for _, sub := range tc.stored {
				mustPut(t, s, sub, 0)
			}
			err := s.PutSubscription(t.Context(), tc.put, tc.minCSeq)
			if !tc.stale {
				if err != nil {
					t.Fatalf("PutSubscription: %v", err)
				}
				equalSubscriptions(t, "stored", []storage.Subscription{mustSubscription(t, s, aor, id, at(t0, 1))}, []storage.Subscription{tc.put})
				return
			}
			if !errors.Is(err, storage.ErrStale) {
				t.Fatalf("err = %v, want ErrStale", err)
			}
			// Nothing written: the stored one is as it was, and expires when it did.
			ex, err := s.ExpireSubscriptions(t.Context(), tc.stored[0].ExpiresAt, 10)
			if err != nil || len(ex) != 1 {
				t.Fatalf("ExpireSubscriptions = %+v, %v; want the stored one", ex, err)
			}
			equalSubscriptions(t, "after ErrStale", []storage.Subscription{ex[0].Subscription}, tc.stored)
		})
	}
}

// testSubscriptionNotFound: Subscription fails with ErrNotFound for what is not stored or has
// expired (at exactly ExpiresAt).
func testSubscriptionNotFound(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	mustPut(t, s, subscription(t0, aor, "s1", 1, 0, 10), 0)
	mustSubscription(t, s, aor, "s1", at(t0, 9))
	for _, tc := range []struct {
		name, aor, id string
		now           int
	}{
		{"unknown ID", aor, "s2", 0},
		{"empty ID", aor, "", 0},
		{"other AOR", "bob@example.com", "s1", 0},
		{"at ExpiresAt", aor, "s1", 10},
		{"after ExpiresAt", aor, "s1", 11},
	} {
		if _, err := s.Subscription(t.Context(), tc.aor, tc.id, at(t0, tc.now)); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", tc.name, err)
		}
	}
	if err := s.PutSubscription(t.Context(), subscription(t0, aor, "", 1, 0, 10), 0); err == nil || errors.Is(err, storage.ErrStale) {
		t.Errorf("PutSubscription(empty ID): err = %v, want a plain error", err)
	}
}

// testSubscriptions: every live subscription of the AOR, both events, ordered by ID (byte
// order); nil when none.
func testSubscriptions(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	equalSubscriptions(t, "Subscriptions(empty)", mustSubscriptions(t, s, aor, t0), nil)
	var want []storage.Subscription
	for i, id := range []string{"c", "a", "B", "b10", "b9", "é", "a\x00"} {
		sub := subscription(t0, aor, id, uint32(i), 0, 100+i)
		if i%2 == 1 {
			sub.Event, sub.Watcher = "presence.winfo", aor
		}
		mustPut(t, s, sub, 0)
		want = append(want, sub)
	}
	mustPut(t, s, subscription(t0, aor, "expired", 1, 0, 5), 0)
	mustPut(t, s, subscription(t0, "bob@example.com", "bobs", 1, 0, 100), 0)
	slices.SortFunc(want, byID)
	equalSubscriptions(t, "Subscriptions", mustSubscriptions(t, s, aor, at(t0, 5)), want)
	if got := ids(mustSubscriptions(t, s, aor, at(t0, 4))); !slices.Contains(got, "expired") {
		t.Errorf("Subscriptions at +4 = %q, want expired listed", got)
	}
	// At +103 those with exp <= 103 (i <= 3) are gone.
	live := slices.DeleteFunc(slices.Clone(want), func(s storage.Subscription) bool { return !s.ExpiresAt.After(at(t0, 103)) })
	equalSubscriptions(t, "Subscriptions at +103", mustSubscriptions(t, s, aor, at(t0, 103)), live)
	equalSubscriptions(t, "Subscriptions at +200", mustSubscriptions(t, s, aor, at(t0, 200)), nil)
}

func byID(a, b storage.Subscription) int { return strings.Compare(a.ID, b.ID) }

func testDeleteSubscription(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	ctx := t.Context()
	s := newStore(t)
	if _, err := s.DeleteSubscription(ctx, aor, "s1", t0); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteSubscription(empty) = %v, want ErrNotFound", err)
	}
	var subs []storage.Subscription
	for i := range 3 {
		sub := subscription(t0, aor, fmt.Sprintf("s%d", i), uint32(i), 0, 600)
		mustPut(t, s, sub, 0)
		subs = append(subs, sub)
	}
	expired := subscription(t0, aor, "s9", 1, 0, 5)
	mustPut(t, s, expired, 0)
	bobs := subscription(t0, "bob@example.com", "s0", 1, 0, 600)
	mustPut(t, s, bobs, 0)
	now := at(t0, 5)
	tests := []struct {
		name    string
		aor, id string
		want    *storage.Subscription
		left    []storage.Subscription
	}{
		{name: "middle", aor: aor, id: "s1", want: &subs[1], left: []storage.Subscription{subs[0], subs[2]}},
		{name: "again", aor: aor, id: "s1", left: []storage.Subscription{subs[0], subs[2]}},
		{name: "unknown", aor: aor, id: "nope", left: []storage.Subscription{subs[0], subs[2]}},
		{name: "other AOR's ID", aor: "carol@example.com", id: "s0", left: []storage.Subscription{subs[0], subs[2]}},
		{name: "expired", aor: aor, id: "s9", left: []storage.Subscription{subs[0], subs[2]}},
		{name: "first", aor: aor, id: "s0", want: &subs[0], left: []storage.Subscription{subs[2]}},
		{name: "last", aor: aor, id: "s2", want: &subs[2]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.DeleteSubscription(ctx, tc.aor, tc.id, now)
			if tc.want == nil {
				if !errors.Is(err, storage.ErrNotFound) {
					t.Fatalf("err = %v, want ErrNotFound", err)
				}
			} else {
				if err != nil {
					t.Fatalf("DeleteSubscription: %v", err)
				}
				equalSubscriptions(t, "deleted", []storage.Subscription{got}, []storage.Subscription{*tc.want})
			}
			equalSubscriptions(t, "left", mustSubscriptions(t, s, aor, now), tc.left)
		})
	}
	equalSubscriptions(t, "bob's", mustSubscriptions(t, s, "bob@example.com", now), []storage.Subscription{bobs})
	// The expired one was left for the sweep; deleted ones are not expired later.
	ex, err := s.ExpireSubscriptions(ctx, at(t0, 5), 100)
	if err != nil || len(ex) != 1 || ex[0].AOR != aor || ex[0].Subscription.ID != "s9" {
		t.Fatalf("ExpireSubscriptions(+5) = %+v, %v; want s9", ex, err)
	}
	ex, err = s.ExpireSubscriptions(ctx, at(t0, 1000), 100)
	if err != nil || len(ex) != 1 || ex[0].AOR != "bob@example.com" {
		t.Fatalf("ExpireSubscriptions(+1000) = %+v, %v; want only bob's", ex, err)
	}
}

// testExpireSubscriptions: each expired subscription once, limit respected, deleted and
// refreshed ones not returned, a shortened one at its new time.
func testExpireSubscriptions(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	ctx := t.Context()
	s := newStore(t)
	want := map[string]storage.Subscription{} // aor|id → subscription expected from the sweep
	c := &sweepCheck[storage.Subscription]{
		t: t, sweep: expiredSubscriptions(t, s), diff: diffSubscription, want: want, seen: map[string]bool{},
		expires: func(sub storage.Subscription) time.Time { return sub.ExpiresAt },
	}
	c.basics(t0)
	user := func(i int) string { return fmt.Sprintf("user%d@example.com", i%5) }
	for i := range 12 {
		sub := subscription(t0, user(i), fmt.Sprintf("s%d", i), 1, 0, 10+i) // expire t0+10..t0+21
		mustPut(t, s, sub, 0)
		want[sub.AOR+"|"+sub.ID] = sub
	}
	live := subscription(t0, user(0), "live", 1, 0, 1000)
	mustPut(t, s, live, 0)
	if _, err := s.DeleteSubscription(ctx, user(1), "s1", at(t0, 5)); err != nil {
		t.Fatalf("DeleteSubscription: %v", err)
	}
	delete(want, user(1)+"|s1")
	refreshed := subscription(t0, user(2), "s2", 2, 0, 1000)
	mustPut(t, s, refreshed, 2)
	delete(want, user(2)+"|s2")
	short := subscription(t0, user(3), "s3", 2, 0, 6)
	mustPut(t, s, short, 2)
	want[user(3)+"|s3"] = short

	if n := c.run(at(t0, 5), 100); n != 0 {
		t.Fatalf("ExpireSubscriptions(+5) returned %d, want none", n)
	}
	if n := c.run(at(t0, 6), 100); n != 1 || !c.seen[user(3)+"|s3"] {
		t.Fatalf("ExpireSubscriptions(+6) returned %d (%v), want the shortened s3", n, c.seen)
	}
	if counts := c.batches(at(t0, 15), 2); !slices.Equal(counts, []int{2, 1}) { // s0, s4, s5
		t.Fatalf("batches at +15 = %v, want [2 1] (%v)", counts, c.seen)
	}
	c.drain(at(t0, 100), 3)
	equalSubscriptions(t, "user0 after the sweeps", mustSubscriptions(t, s, user(0), at(t0, 100)), []storage.Subscription{live})
	equalSubscriptions(t, "user2 after the sweeps", mustSubscriptions(t, s, user(2), at(t0, 100)), []storage.Subscription{refreshed})
}

// testPutSubscriptionConcurrent: the CSeq condition is atomic (racing in-dialog SUBSCRIBEs
// leave the highest CSeq stored), and racing puts of different IDs lose none.
func testPutSubscriptionConcurrent(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	const workers, cseqs = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers)
	for w := range workers {
		wg.Go(func() {
			for i := range cseqs {
				c := uint32((i+w*5)%cseqs + 1) // every worker tries every CSeq, in its own order
				err := s.PutSubscription(t.Context(), subscription(t0, aor, "dialog", c, 0, 600), c)
				if err != nil && !errors.Is(err, storage.ErrStale) {
					errs <- err
					return
				}
				if err := s.PutSubscription(t.Context(), subscription(t0, aor, fmt.Sprintf("w%d", w), uint32(i+1), 0, 600), uint32(i+1)); err != nil {
					errs <- fmt.Errorf("worker %d own dialog CSeq %d: %w", w, i+1, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := mustSubscription(t, s, aor, "dialog", t0); got.RemoteCSeq != cseqs {
		t.Fatalf("RemoteCSeq after racing puts = %d, want %d (a lower CSeq overwrote a higher one)", got.RemoteCSeq, cseqs)
	}
	subs := mustSubscriptions(t, s, aor, t0)
	if len(subs) != workers+1 {
		t.Fatalf("%d subscriptions after racing puts, want %d: %q", len(subs), workers+1, ids(subs))
	}
	for _, sub := range subs {
		if sub.RemoteCSeq != cseqs {
			t.Errorf("%s: RemoteCSeq %d, want %d", sub.ID, sub.RemoteCSeq, cseqs)
		}
	}
}

func testRules(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ctx := t.Context()
	rules := func(aor string, want map[string]string) {
		t.Helper()
		got, err := s.Rules(ctx, aor)
		if err != nil {
			t.Fatalf("Rules(%s): %v", aor, err)
		}
		if got == nil || !maps.Equal(got, want) {
			t.Fatalf("Rules(%s) = %#v, want %#v", aor, got, want)
		}
	}
	set := func(aor, watcher, rule string) {
		t.Helper()
		if err := s.SetRule(ctx, aor, watcher, rule); err != nil {
			t.Fatalf("SetRule(%s, %s, %s): %v", aor, watcher, rule, err)
		}
	}
	rules(aor, map[string]string{})
	if err := s.DeleteRule(ctx, aor, "bob@example.com"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteRule(none) = %v, want ErrNotFound", err)
	}
	set(aor, "bob@example.com", storage.RuleAllow)
	set(aor, "example.org", storage.RuleBlock)
	set(aor, "carol@example.org", storage.RulePending)
	set(aor, "bob@example.com", storage.RulePoliteBlock) // overwrite
	set("{we|ird}@x", "b|o{b}@x", storage.RuleAllow)
	rules(aor, map[string]string{"bob@example.com": storage.RulePoliteBlock, "example.org": storage.RuleBlock, "carol@example.org": storage.RulePending})
	rules("{we|ird}@x", map[string]string{"b|o{b}@x": storage.RuleAllow})
	rules("bob@example.com", map[string]string{})

	for _, bad := range [][2]string{{"dave@example.com", "maybe"}, {"dave@example.com", ""}, {"", storage.RuleAllow}} {
		if err := s.SetRule(ctx, aor, bad[0], bad[1]); err == nil || errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("SetRule(%q, %q): err = %v, want a plain error", bad[0], bad[1], err)
		}
	}
	// A returned map is the caller's.
	got, err := s.Rules(ctx, aor)
	if err != nil {
		t.Fatal(err)
	}
	got["mallory@example.com"] = storage.RuleAllow
	delete(got, "example.org")

	if err := s.DeleteRule(ctx, aor, "example.org"); err != nil {
		t.Fatalf("DeleteRule: %v", err)
	}
	if err := s.DeleteRule(ctx, aor, "example.org"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteRule again = %v, want ErrNotFound", err)
	}
	if err := s.DeleteRule(ctx, "bob@example.com", "carol@example.org"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("DeleteRule(other AOR) = %v, want ErrNotFound", err)
	}
	rules(aor, map[string]string{"bob@example.com": storage.RulePoliteBlock, "carol@example.org": storage.RulePending})
	for _, w := range []string{"bob@example.com", "carol@example.org"} {
		if err := s.DeleteRule(ctx, aor, w); err != nil {
			t.Fatalf("DeleteRule(%s): %v", w, err)
		}
	}
	rules(aor, map[string]string{})
	rules("{we|ird}@x", map[string]string{"b|o{b}@x": storage.RuleAllow})
}

func testPresenceClose(t *testing.T, newStore func(t *testing.T) Store) {
	s := newStore(t)
	ctx := t.Context()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t0 := base()
	checks := map[string]error{}
	_, checks["Publish"] = s.Publish(ctx, aor, create(t0, 0, "e", "x", 60))
	_, checks["Publications"] = s.Publications(ctx, aor, t0)
	_, checks["ExpirePublications"] = s.ExpirePublications(ctx, t0, 10)
	checks["PutSubscription"] = s.PutSubscription(ctx, subscription(t0, aor, "s", 1, 0, 60), 0)
	_, checks["Subscription"] = s.Subscription(ctx, aor, "s", t0)
	_, checks["Subscriptions"] = s.Subscriptions(ctx, aor, t0)
	_, checks["DeleteSubscription"] = s.DeleteSubscription(ctx, aor, "s", t0)
	_, checks["ExpireSubscriptions"] = s.ExpireSubscriptions(ctx, t0, 10)
	checks["SetRule"] = s.SetRule(ctx, aor, "bob@example.com", storage.RuleAllow)
	checks["DeleteRule"] = s.DeleteRule(ctx, aor, "bob@example.com")
	_, checks["Rules"] = s.Rules(ctx, aor)
	for name, err := range checks {
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("%s after Close = %v, want ErrUnavailable", name, err)
		}
	}
}

// benchPIDF is the document of the publish benchmarks.
var benchPIDF = []byte(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
	`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:alice@example.com">` +
	`<tuple id="t1"><status><basic>open</basic></status><contact>sip:alice@192.0.2.1</contact></tuple></presence>`)

// benchPublisher modifies the publications of its own AORs in turn, each of which holds two
// publications: the publish benchmarks' load. One benchPublisher is used by one goroutine.
type benchPublisher struct {
	s    Store
	t0   time.Time
	aors []string
	cur  []string // per AOR, the current entity tag
	i    int
}

// newBenchPublisher stores two publications under each of n AORs named after prefix.
func newBenchPublisher(b *testing.B, s Store, t0 time.Time, prefix string, n int) *benchPublisher {
	p := &benchPublisher{s: s, t0: t0, aors: make([]string, n), cur: make([]string, n)}
	for i := range p.aors {
		p.aors[i] = fmt.Sprintf("%s%d@bench.example.com", prefix, i)
		for _, etag := range []string{"other", "e0"} {
			op := create(t0, 0, etag, "", 3600)
			op.Body = benchPIDF
			if _, err := s.Publish(b.Context(), p.aors[i], op); err != nil {
				b.Fatalf("Publish: %v", err)
			}
		}
		p.cur[i] = "e0"
	}
	return p
}

// next modifies the current publication of the next AOR (new entity tag, new body).
func (p *benchPublisher) next(ctx context.Context) error {
	a := p.i % len(p.aors)
	etag := fmt.Sprintf("e%d", p.i+1)
	op := modify(p.t0, 0, p.cur[a], etag, "", 3600)
	op.Body = benchPIDF
	if _, err := p.s.Publish(ctx, p.aors[a], op); err != nil {
		return fmt.Errorf("Publish(%s): %w", p.aors[a], err)
	}
	p.cur[a] = etag
	p.i++
	return nil
}

// BenchmarkPublish measures the PUBLISH path: the modification of one publication (new
// entity tag, new body), on distinct AORs in turn, each holding two publications.
func BenchmarkPublish(b *testing.B, s Store) {
	p := newBenchPublisher(b, s, base(), "pub", benchAORs)
	b.ReportAllocs()
	for b.Loop() {
		if err := p.next(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishParallel is BenchmarkPublish from 16 goroutines per GOMAXPROCS, each on
// its own AORs: many PUBLISHes in flight at once, as under sipp load.
func BenchmarkPublishParallel(b *testing.B, s Store) {
	const parallelism = 16
	t0 := base()
	n := parallelism * runtime.GOMAXPROCS(0)
	pubs := make(chan *benchPublisher, n)
	for g := range n {
		pubs <- newBenchPublisher(b, s, t0, fmt.Sprintf("ppub%d-", g), max(1, benchAORs/n))
	}
	b.SetParallelism(parallelism)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		p := <-pubs
		for pb.Next() {
			if err := p.next(b.Context()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSubscriptions measures listing the subscriptions of a popular presentity: 1,000
// subscriptions of one AOR (what every presence change of that AOR notifies).
func BenchmarkSubscriptions(b *testing.B, s Store) {
	ctx := b.Context()
	t0 := base()
	const n = 1000
	const a = "popular@bench.example.com"
	for i := range n {
		sub := subscription(t0, a, fmt.Sprintf("to-tag-%04d", i), 1, 0, 3600)
		sub.Watcher, sub.WatcherURI = fmt.Sprintf("w%d@example.com", i), fmt.Sprintf("sip:w%d@example.com", i)
		sub.RouteSet = []string{"<sip:edge.example.com;lr>"}
		if err := s.PutSubscription(ctx, sub, 0); err != nil {
			b.Fatalf("PutSubscription: %v", err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		subs, err := s.Subscriptions(ctx, a, t0)
		if err != nil || len(subs) != n {
			b.Fatalf("Subscriptions = %d, %v", len(subs), err)
		}
	}
}

// testClaimSubscription: a claim moves a subscription to the claiming node and raises its CSeq
// reservation by the block, only from the owner it expects (or by the owner itself); a
// subscription that is gone or expired cannot be claimed; the fields survive a round trip.
func testClaimSubscription(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	ctx := t.Context()
	sub := subscription(t0, aor, "s1", 1, 0, 600)
	sub.Node, sub.NotifyCSeq = "a", 1000
	mustPut(t, s, sub, 0)
	if got := mustSubscription(t, s, aor, "s1", t0); got.Node != "a" || got.NotifyCSeq != 1000 {
		t.Fatalf("stored Node %q NotifyCSeq %d, want a 1000", got.Node, got.NotifyCSeq)
	}
	got, err := s.ClaimSubscription(ctx, aor, "s1", "a", "b", 1000, t0)
	if err != nil || got.Node != "b" || got.NotifyCSeq != 2000 {
		t.Fatalf("claim from a by b: %+v, %v; want Node b NotifyCSeq 2000", got, err)
	}
	if _, err := s.ClaimSubscription(ctx, aor, "s1", "a", "c", 1000, t0); !errors.Is(err, storage.ErrStale) {
		t.Fatalf("claim from a by c after b took it: %v, want ErrStale", err)
	}
	if got := mustSubscription(t, s, aor, "s1", t0); got.Node != "b" || got.NotifyCSeq != 2000 {
		t.Fatalf("a refused claim changed the subscription: Node %q NotifyCSeq %d", got.Node, got.NotifyCSeq)
	}
	// The owner renews its own reservation whatever it names as the expected owner.
	if got, err := s.ClaimSubscription(ctx, aor, "s1", "b", "b", 500, t0); err != nil || got.NotifyCSeq != 2500 {
		t.Fatalf("renewal by b: %+v, %v; want NotifyCSeq 2500", got, err)
	}
	if got := mustSubscription(t, s, aor, "s1", t0); got.RemoteCSeq != 1 || got.CallID != "call-s1" || !got.ExpiresAt.Equal(at(t0, 600)) {
		t.Errorf("the claim changed more than the owner and reservation: %+v", got)
	}
	if _, err := s.ClaimSubscription(ctx, aor, "nope", "", "b", 1000, t0); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("claim of a subscription never stored: %v, want ErrNotFound", err)
	}
	if _, err := s.ClaimSubscription(ctx, aor, "s1", "b", "b", 1000, at(t0, 600)); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("claim of an expired subscription: %v, want ErrNotFound", err)
	}
	// A subscription stored before reservations existed (no owner, no NotifyCSeq).
	mustPut(t, s, subscription(t0, aor, "old", 1, 0, 600), 0)
	if got, err := s.ClaimSubscription(ctx, aor, "old", "", "b", 1000, t0); err != nil || got.Node != "b" || got.NotifyCSeq != 1000 {
		t.Errorf("claim of an unowned subscription: %+v, %v", got, err)
	}
}

// testClaimSubscriptionConcurrent: nodes racing to take over one subscription of a dead node:
// exactly one wins, and the reservation is raised once.
func testClaimSubscriptionConcurrent(t *testing.T, newStore func(t *testing.T) Store) {
	t0 := base()
	s := newStore(t)
	sub := subscription(t0, aor, "s1", 1, 0, 600)
	sub.Node, sub.NotifyCSeq = "dead", 1000
	mustPut(t, s, sub, 0)
	const nodes = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		won  []string
		errs []error
	)
	for i := range nodes {
		wg.Go(func() {
			node := fmt.Sprintf("n%d", i)
			_, err := s.ClaimSubscription(t.Context(), aor, "s1", "dead", node, 1000, t0)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				won = append(won, node)
			case !errors.Is(err, storage.ErrStale):
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	if len(won) != 1 {
		t.Fatalf("%d nodes claimed the subscription (%q), want exactly 1", len(won), won)
	}
	if got := mustSubscription(t, s, aor, "s1", t0); got.Node != won[0] || got.NotifyCSeq != 2000 {
		t.Fatalf("after the race: Node %q NotifyCSeq %d, want %q 2000", got.Node, got.NotifyCSeq, won[0])
	}
}
