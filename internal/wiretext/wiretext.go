// Package wiretext makes text that may hold file names valid UTF-8 for
// protocols that need text (protobuf strings, SFTP status messages): a
// name is any bytes but NUL and "/", and its invalid UTF-8 bytes are shown
// escaped.
package wiretext

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Valid returns s with every byte that is not part of valid UTF-8 shown
// as \xNN; valid UTF-8 comes back unchanged.
func Valid(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			fmt.Fprintf(&b, "\\x%02x", s[i])
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
