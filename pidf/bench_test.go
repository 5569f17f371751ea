package pidf

import "testing"

func benchParse(b *testing.B, file string) {
	data := readFixture(b, file)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	b.Run("baresip", func(b *testing.B) { benchParse(b, "publish-baresip-open.xml") })
	b.Run("linphone", func(b *testing.B) { benchParse(b, "publish-liblinphone-away.xml") })
}

func BenchmarkCompose(b *testing.B) {
	docs := []*Document{
		mustParse(b, readFixture(b, "publish-baresip-open.xml")),
		mustParse(b, readFixture(b, "publish-liblinphone-away.xml")),
		mustParse(b, readFixture(b, "publish-linphonec-online.xml")),
	}
	b.ReportAllocs()
	for b.Loop() {
		Compose("sip:alice@example.test", docs...)
	}
}

func BenchmarkBytes(b *testing.B) {
	d := mustParse(b, readFixture(b, "publish-liblinphone-away.xml"))
	b.ReportAllocs()
	for b.Loop() {
		d.Bytes()
	}
}
