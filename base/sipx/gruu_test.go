package sipx

import (
	"strings"
	"testing"
)

func TestTempGRUU(t *testing.T) {
	g := NewGRUUs([]byte("deployment secret"))
	const aor, inst = "alice@example.test", "<urn:uuid:00000000-0000-4000-8000-000000000001>"
	a, b := g.Temp(aor, inst), g.Temp(aor, inst)
	if a == b {
		t.Fatal("two temp-gruus of one device are equal: each REGISTER must get a new one")
	}
	for _, u := range []string{a, b, strings.ToUpper(a[:len(TempGRUUPrefix)]) + a[len(TempGRUUPrefix):]} {
		if strings.Contains(u, "alice") || strings.Contains(u, "uuid") {
			t.Fatalf("temp-gruu %q reveals the AOR or instance", u)
		}
		if !strings.HasPrefix(u, TempGRUUPrefix) {
			continue // the upper-cased prefix is not ours
		}
		gotAOR, gotInst, ok := g.Open(u)
		if !ok || gotAOR != aor || gotInst != inst {
			t.Fatalf("Open(%q) = %q, %q, %v", u, gotAOR, gotInst, ok)
		}
	}
	if _, _, ok := NewGRUUs([]byte("another secret")).Open(a); ok {
		t.Fatal("a temp-gruu opens under another deployment's secret")
	}
	for _, u := range []string{"", "alice", TempGRUUPrefix, TempGRUUPrefix + "aaaa", a[:len(a)-1], a + "a"} {
		if _, _, ok := g.Open(u); ok {
			t.Errorf("Open(%q) accepted", u)
		}
	}
}
