package auth

import (
	"reflect"
	"testing"
)

// FuzzParseAuthorization checks that ParseCredentials never panics and that a value it accepts
// serialises (String) to a value that parses back to the same Credentials. Seeds: every
// credentials line of the captures in testdata, plus hand-written edge cases.
func FuzzParseAuthorization(f *testing.F) {
	for _, fc := range fixtureCredentials(f) {
		f.Add(fc.value)
	}
	for _, s := range []string{
		`Digest username="Mufasa",realm="http-auth@example.org",uri="/dir/index.html",algorithm=SHA-256,nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",nc=00000001,cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",qop=auth,response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`,
		`Digest username="a\"b\\c", realm="r", x-foo="bar, baz",, userhash=false`,
		"digest\tusername = \"bob\" ,\trealm\t=\t\"example.test\" , nc = 0000000a",
		`Digest uri=sip:bob@example.test;transport=udp, algorithm="MD5 sess"`,
		`Digest`,
		`Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==`,
		`Digest username="alice`,
		"Digest username=\"\xff\xfe\"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := ParseCredentials(in)
		if err != nil {
			return
		}
		_ = c.Validate()
		out := c.String()
		again, err := ParseCredentials(out)
		if err != nil {
			t.Fatalf("re-parse of %q (from %q): %v", out, in, err)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("round trip of %q:\n got %+v\nwant %+v", in, again, c)
		}
	})
}
