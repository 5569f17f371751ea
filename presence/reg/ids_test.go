package reg

import (
	"hash/fnv"
	"strconv"
	"testing"
)

// The documents' ids are the same as those hash/fnv gave (nodes of two versions agree on
// them while a deployment is upgraded), for any AOR and contact key.
func TestIDsAreFNV(t *testing.T) {
	want := func(prefix, s string) string {
		h := fnv.New64a()
		h.Write([]byte(s))
		return prefix + strconv.FormatUint(h.Sum64(), 36)
	}
	for _, c := range [][2]string{{"alice@example.test", "sip:alice@192.0.2.1:5060"}, {"", ""},
		{"b@x", "<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"}, {"é@ü", "\x00\xff"}} {
		if got, w := contactID(c[0], c[1]), want("c", c[0]+"\x00"+c[1]); got != w {
			t.Errorf("contactID(%q, %q) = %q, want %q", c[0], c[1], got, w)
		}
		if got, w := registrationID(c[0]), want("r", c[0]); got != w {
			t.Errorf("registrationID(%q) = %q, want %q", c[0], got, w)
		}
		if got, w := hash64(c[1]), want("", c[1]); got != w {
			t.Errorf("hash64(%q) = %q, want %q", c[1], got, w)
		}
	}
}
