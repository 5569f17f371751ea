package sipx

import "strings"

// Display names. sipgo keeps a From/To/Contact display name as it appeared between the quotes
// of its quoted-string, quoted-pairs and all, and writes the field back between quotes as it
// is. A name simpled stores or rewrites must therefore go through both helpers: a raw value
// trimmed or edited by hand (a name ending in `\"` whose closing escaped quote was trimmed
// away) would end the quoted-string early or never, and break the header of every request
// built from it.

// DisplayNameText returns the text of a display name as sipgo parsed it: surrounding quotes
// removed and quoted-pairs (RFC 3261 §25.1: "\" followed by any character) resolved. A token
// display name (unquoted) comes back as it is.
func DisplayNameText(raw string) string {
	raw = strings.TrimSpace(raw)
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && !escapedAt(raw, len(raw)-1) {
		raw = raw[1 : len(raw)-1]
	}
	if !strings.Contains(raw, `\`) {
		return raw
	}
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); i++ {
		if raw[i] == '\\' && i+1 < len(raw) {
			i++
		}
		b.WriteByte(raw[i])
	}
	return b.String()
}

// escapedAt reports whether s[i] is preceded by an odd run of backslashes.
func escapedAt(s string, i int) bool {
	n := 0
	for j := i - 1; j >= 0 && s[j] == '\\'; j-- {
		n++
	}
	return n%2 == 1
}

// QuoteDisplayName returns text as the inside of a quoted-string (RFC 3261 §25.1), the form
// a sipgo header's DisplayName field is written in: `"` and `\` become quoted-pairs, and
// CR, LF and other control characters, which no quoted-string may carry (a quoted-pair
// cannot hold CR or LF), become spaces. sipgo adds the quotes.
func QuoteDisplayName(text string) string {
	clean := true
	for i := 0; i < len(text); i++ {
		if c := text[i]; c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return text
	}
	var b strings.Builder
	b.Grow(len(text) + 4)
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\t':
			b.WriteByte(c) // LWS, allowed in qdtext
		case c < 0x20 || c == 0x7f:
			b.WriteByte(' ')
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
