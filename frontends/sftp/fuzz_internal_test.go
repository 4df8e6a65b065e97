package sftp

// Fuzz test of the parser that reads client bytes before any authorization
// question is asked: the exec command line (splitCommand). (The request
// payload around it is ssh.Unmarshal's.)

import (
	"slices"
	"strings"
	"testing"
)

// splitCommand splits a command line into its words' texts (splitWords).
func splitCommand(s string) ([]string, error) {
	words, err := splitWords(s)
	if err != nil {
		return nil, err
	}
	texts := make([]string, len(words))
	for i, w := range words {
		texts[i] = w.text
	}
	return texts, nil
}

// plainSep reports the bytes a plain word may not hold: the separators,
// the quoting characters, and "~", which a shell expands at a word's
// start.
func plainSep(r rune) bool { return strings.ContainsRune(" \t\n'\"\\~", r) }

// singleQuote quotes w as a POSIX shell word in single quotes; a single
// quote inside closes the quotes, is escaped with a backslash, and reopens
// them.
func singleQuote(w string) string { return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'" }

// doubleQuote quotes w as "..." with \ " $ and ` escaped.
func doubleQuote(w string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(w); i++ {
		if strings.IndexByte("\\\"$`", w[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(w[i])
	}
	b.WriteByte('"')
	return b.String()
}

// backslashed escapes every byte of w with a backslash.
func backslashed(w string) string {
	var b strings.Builder
	for i := 0; i < len(w); i++ {
		b.WriteByte('\\')
		b.WriteByte(w[i])
	}
	return b.String()
}

func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{
		"", "ls", "ls -la /", "md5sum 'a b'", `sha1sum "a\"b"`, `echo a\ b`, "'unterminated",
		`"unterminated`, `trailing\`, "a\tb\nc", `'it'\''s'`, `"$HOME" '$HOME' \$HOME`, "''", `""`,
		"scp -t /upload", "scp -f ~/a*.txt 'b*'", `md5sum [ab]\?`, "rsync --server -vlogDtpre.iLsfxC . /data", "git-upload-pack '/repo'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args, err := splitCommand(s)
		if err != nil && args != nil {
			t.Fatalf("splitCommand(%q) = %q with error %v", s, args, err)
		}
		// A word that is no pattern is its text, escaped.
		ws, _ := splitWords(s)
		for _, w := range ws {
			if hasMeta(w.pattern) != w.glob {
				t.Fatalf("splitWords(%q): word %q: glob %v, pattern %q", s, w.text, w.glob, w.pattern)
			}
			if !w.glob && unescape(w.pattern) != w.text {
				t.Fatalf("splitWords(%q): pattern %q unescapes to %q, not %q", s, w.pattern, unescape(w.pattern), w.text)
			}
		}
		if err == nil && len(args) > len(s) {
			t.Fatalf("splitCommand(%q) = %d words from %d bytes", s, len(args), len(s))
		}

		// Plain words come back as they are.
		words := strings.FieldsFunc(s, plainSep)
		if got, err := splitCommand(strings.Join(words, " ")); err != nil || !slices.Equal(got, words) {
			t.Fatalf("splitCommand of plain words %q = %q, %v", words, got, err)
		}

		// Any words, empty ones included, come back from each way a
		// shell quotes them. The words are s split at NUL, which a
		// command line from SSH cannot hold as a separator otherwise.
		words = strings.Split(s, "\x00")
		for _, quote := range []func(string) string{singleQuote, doubleQuote} {
			quoted := make([]string, len(words))
			for i, w := range words {
				quoted[i] = quote(w)
			}
			line := strings.Join(quoted, " ")
			if got, err := splitCommand(line); err != nil || !slices.Equal(got, words) {
				t.Fatalf("splitCommand(%q) = %q, %v; want %q", line, got, err, words)
			}
		}
		nonEmpty := slices.DeleteFunc(slices.Clone(words), func(w string) bool { return w == "" })
		line := make([]string, len(nonEmpty))
		for i, w := range nonEmpty {
			line[i] = backslashed(w)
		}
		if got, err := splitCommand(strings.Join(line, "\t")); err != nil || !slices.Equal(got, nonEmpty) {
			t.Fatalf("splitCommand of backslashed %q = %q, %v", nonEmpty, got, err)
		}
	})
}
