package wiretext

import "testing"

func TestValid(t *testing.T) {
	for in, want := range map[string]string{
		"plain":              "plain",
		"caf\u00e9":          "caf\u00e9",
		"bad\xff\xfe.txt":    `bad\xff\xfe.txt`,
		"half \xe2\x82 euro": `half \xe2\x82 euro`,
		"":                   "",
	} {
		if got := Valid(in); got != want {
			t.Errorf("Valid(%q) = %q, want %q", in, got, want)
		}
	}
}
