package tokenizer

// GPT-2's byte-level alphabet. Byte-level BPE vocabularies do not store raw
// bytes: every byte is first mapped to a printable character (printable ASCII
// and most of Latin-1 map to themselves, the rest to U+0100 and up), so that a
// token is always a valid, whitespace-free string. Encoding maps bytes to these
// characters; decoding maps them back.
var (
	byteToRune [256]rune
	runeToByte = map[rune]byte{}
	// byteToString[b] is string(byteToRune[b]), kept to avoid re-encoding.
	byteToString [256]string
)

func init() {
	printable := func(b int) bool {
		return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
	}
	n := 0
	for b := 0; b < 256; b++ {
		r := rune(b)
		if !printable(b) {
			r = rune(256 + n)
			n++
		}
		byteToRune[b] = r
		runeToByte[r] = byte(b)
		byteToString[b] = string(r)
	}
}

// byteLevelString maps raw bytes to their byte-level spelling, the form in
// which byte-level vocabularies store tokens.
func byteLevelString(s string) string {
	buf := make([]byte, 0, 2*len(s))
	for i := 0; i < len(s); i++ {
		buf = append(buf, byteToString[s[i]]...)
	}
	return string(buf)
}

// byteLevelBytes maps a byte-level token back to raw bytes. ok is false when
// some character is outside the alphabet (added tokens such as "<|eot_id|>"
// are stored verbatim and decode as their own UTF-8 bytes).
func byteLevelBytes(tok string, dst []byte) ([]byte, bool) {
	n := len(dst)
	for _, r := range tok {
		b, ok := runeToByte[r]
		if !ok {
			return dst[:n], false
		}
		dst = append(dst, b)
	}
	return dst, true
}
