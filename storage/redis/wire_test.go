package redis

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/simpled/simpled/storage"
)

func TestBindingRoundTrip(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 600_000_000, time.FixedZone("CET", 3600))
	in := storage.Binding{
		Key: "k", Contact: "<sip:a@h>", URI: "sip:a@h", ExpiresAt: now.Add(time.Hour), Q: -1,
		CallID: "c\xffd", CSeq: 1<<32 - 1, Path: []string{"<sip:p;lr>"}, InstanceID: "i", RegID: 2,
		Received: "1.2.3.4:5", Transport: "tcp", Flow: "f", Node: "n", UserAgent: "ua", UpdatedAt: now,
	}
	js, err := encodeBinding(&in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(js, `"expires_at":`+strconv.FormatInt(now.Unix()+3600, 10)) || !strings.Contains(js, `"cseq":4294967295`) || !strings.Contains(js, `"<sip:p;lr>"`) {
		t.Errorf("JSON = %s", js)
	}
	out, err := decodeBinding(js)
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.ExpiresAt = time.Unix(now.Unix()+3600, 0).UTC()
	want.UpdatedAt = time.Unix(now.Unix(), 0).UTC()
	want.CallID = asJSONString(in.CallID)
	if want.CallID != "c\uFFFDd" {
		t.Errorf("asJSONString = %q", want.CallID)
	}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, want)
	}
	if _, err := decodeBinding(`{"expires_at":"x"}`); err == nil {
		t.Error("decodeBinding accepted a string expires_at")
	}
}

func TestMember(t *testing.T) {
	for _, tc := range []struct{ aor, key string }{
		{"alice@example.com", "sip:a@h"},
		{"a|b%7C@x", "k|with|pipes"},
		{"%25|%", ""},
		{"", "k"},
	} {
		m := member(tc.aor, tc.key)
		aor, key, ok := parseMember(m)
		if !ok || aor != tc.aor || key != tc.key {
			t.Errorf("parseMember(member(%q, %q) = %q) = %q, %q, %v", tc.aor, tc.key, m, aor, key, ok)
		}
	}
	for _, m := range []string{"", "reg|", "pub|a|b", "reg"} {
		if _, _, ok := parseMember(m); ok {
			t.Errorf("parseMember(%q) ok", m)
		}
	}
}

func TestShardSpread(t *testing.T) {
	seen := map[uint32]int{}
	for i := range 1600 {
		seen[shardOf("user"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+"@example.com"+string(rune(i)))]++
	}
	if len(seen) != shards {
		t.Fatalf("AORs spread over %d shards, want %d", len(seen), shards)
	}
}

func TestClusterURL(t *testing.T) {
	tests := []struct {
		name, base, rest, want string
		wantErr                bool
	}{
		{name: "one node", base: "redis", rest: "10.0.0.1:7000", want: "redis://10.0.0.1:7000"},
		{name: "three nodes", base: "redis", rest: "a:1,b:2,c:3", want: "redis://a:1?addr=b%3A2&addr=c%3A3"},
		{name: "user and db 0", base: "rediss", rest: "u:p@a:1,b:2/0", want: "rediss://u:p@a:1?addr=b%3A2"},
		{name: "query kept", base: "redis", rest: "a:1,b:2?dial_timeout=1s", want: "redis://a:1?addr=b%3A2&dial_timeout=1s"},
		{name: "ipv6", base: "redis", rest: "[::1]:1,[::1]:2", want: "redis://[::1]:1?addr=%5B%3A%3A1%5D%3A2"},
		{name: "db 1", base: "redis", rest: "a:1/1", wantErr: true},
		{name: "no port", base: "redis", rest: "a:1,b", wantErr: true},
		{name: "empty", base: "redis", rest: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := clusterURL(tc.base, tc.rest)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("clusterURL = %q, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("clusterURL = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestMessageEncoding(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 600_000_000, time.FixedZone("CET", 3600))
	for _, body := range [][]byte{nil, []byte("\n"), []byte("\x00\xff\n{\"a\":1}\n"), []byte("<b>&</b>")} {
		in := storage.Message{
			ID: "ignored", DedupKey: "k<&>", CallID: "c@h", CSeq: 1<<32 - 1, From: "<sip:a@h>", To: "<sip:b@h>", Date: "d",
			ContentType: "text/html", ContentEncoding: "gzip", Body: body, StoredAt: now, ExpiresAt: now.Add(time.Hour),
		}
		v, err := encodeMessage(&in)
		if err != nil {
			t.Fatal(err)
		}
		header, rest, ok := strings.Cut(string(v), "\n")
		if !ok || rest != string(body) || !strings.Contains(header, `"dedup_key":"k<&>"`) || !strings.Contains(header, `"stored_at":`+strconv.FormatInt(now.Unix(), 10)) {
			t.Errorf("encoded = %q", v)
		}
		out, err := decodeMessage("0001", string(v))
		if err != nil {
			t.Fatal(err)
		}
		want := in
		want.ID = "0001"
		want.StoredAt = time.Unix(now.Unix(), 0).UTC()
		want.ExpiresAt = time.Unix(now.Unix()+3600, 0).UTC()
		if len(body) == 0 {
			want.Body = nil
		}
		if !reflect.DeepEqual(out, want) {
			t.Errorf("round trip:\n got %+v\nwant %+v", out, want)
		}
	}
}

func TestMsgMember(t *testing.T) {
	for _, aor := range []string{"alice@example.com", "a|b%7C@x", "{}"} {
		m := msgMember(aor, "0000000000000001")
		if got, id, ok := parseIndexMember(msgPrefix, m); !ok || got != aor || id != "0000000000000001" {
			t.Errorf("parseIndexMember(%q) = %q, %q, %v", m, got, id, ok)
		}
		if _, _, ok := parseMember(m); ok {
			t.Errorf("parseMember(%q) took a message entry for a binding", m)
		}
	}
}
