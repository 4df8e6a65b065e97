package sftp

import (
	"errors"
	"path"
	"slices"
	"strings"

	"github.com/spf13/afero"
)

// word is one word of an exec command line, split as a POSIX shell splits
// it: text is the word with its quotes and backslashes removed, a leading
// unquoted "~" (the user's home, "/" here) expanded; pattern is the same
// word as a path.Match pattern, its quoted or escaped bytes escaped, and
// glob says an unquoted "*", "?" or "[" makes it one.
type word struct {
	text, pattern string
	glob          bool
}

// splitCommand splits a command line as a POSIX shell would for plain
// words, single and double quotes and backslashes; nothing is expanded
// but a leading "~".
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

// splitWords splits a command line into words (see word).
func splitWords(s string) ([]word, error) {
	var words []word
	var text, pat strings.Builder
	inWord, glob, quote := false, false, byte(0)
	literal := func(c byte) { // a byte that is no pattern character
		text.WriteByte(c)
		if strings.IndexByte(`*?[\`, c) >= 0 {
			pat.WriteByte('\\')
		}
		pat.WriteByte(c)
	}
	end := func() {
		if inWord {
			words = append(words, word{text: text.String(), pattern: pat.String(), glob: glob})
			text.Reset()
			pat.Reset()
			inWord, glob = false, false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				quote = 0
			} else {
				literal(c)
			}
		case quote == '"':
			switch {
			case c == '"':
				quote = 0
			case c == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0:
				i++
				literal(s[i])
			default:
				literal(c)
			}
		case c == '\'' || c == '"':
			quote, inWord = c, true
		case c == '\\' && i+1 < len(s):
			i++
			literal(s[i])
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			end()
		case c == '~' && !inWord && (i+1 == len(s) || strings.IndexByte("/ \t\n", s[i+1]) >= 0):
			// The home directory, which is the root of every user's tree.
			text.WriteByte('/')
			pat.WriteByte('/')
			inWord = true
			if i+1 < len(s) && s[i+1] == '/' {
				i++ // "~/x" is "/x"
			}
		default:
			if c == '*' || c == '?' || c == '[' {
				glob = true
			}
			text.WriteByte(c)
			pat.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unterminated quote")
	}
	end()
	return words, nil
}

// Bounds of one word's expansion: the matches kept, and the directories
// listed to find them (each is an agent call).
const (
	maxGlobMatches  = 10_000
	maxGlobListings = 1_000
)

// expand is what a shell makes of a word: the names of fsys that its
// pattern matches, sorted, relative to the root ("/") as the word is;
// the word's text alone when it is no pattern, or matches nothing (as
// sh without nullglob leaves it). As in sh, "*" and "?" do not match a
// leading "." and "/" is matched only literally. A directory that cannot
// be listed matches nothing.
func expand(fsys afero.Fs, w word) []string {
	if !w.glob {
		return []string{w.text}
	}
	parts := strings.Split(w.pattern, "/")
	found := []string{""} // paths as the word writes them
	if strings.HasPrefix(w.pattern, "/") {
		found, parts = []string{"/"}, parts[1:]
	}
	listings := 0
	for i, part := range parts {
		if part == "" { // "a//b", or a trailing "/"
			for j := range found {
				found[j] = joinWord(found[j], "")
			}
			continue
		}
		if !hasMeta(part) {
			lit := unescape(part)
			for j := range found {
				found[j] = joinWord(found[j], lit)
			}
			continue
		}
		if _, err := path.Match(part, ""); err != nil {
			return []string{w.text} // a malformed pattern stays a word
		}
		var next []string
		for _, dir := range found {
			if listings++; listings > maxGlobListings {
				return []string{w.text}
			}
			names, err := readNames(fsys, path.Join("/", dir))
			if err != nil {
				continue
			}
			for _, name := range names {
				if strings.HasPrefix(name, ".") && !strings.HasPrefix(part, ".") && !strings.HasPrefix(part, `\.`) {
					continue
				}
				if ok, _ := path.Match(part, name); ok {
					next = append(next, joinWord(dir, name))
				}
			}
			if len(next) > maxGlobMatches {
				return []string{w.text}
			}
		}
		if i < len(parts)-1 {
			// Only directories lead on; the last part's names may be
			// anything.
			next = slices.DeleteFunc(next, func(p string) bool {
				fi, err := fsys.Stat(path.Join("/", p))
				return err != nil || !fi.IsDir()
			})
		}
		found = next
		if len(found) == 0 {
			return []string{w.text}
		}
	}
	slices.Sort(found)
	return found
}

// joinWord appends name to a path as written in a word.
func joinWord(dir, name string) string {
	if dir == "" || strings.HasSuffix(dir, "/") {
		return dir + name
	}
	return dir + "/" + name
}

// hasMeta reports whether a path.Match pattern holds an unescaped "*",
// "?" or "[".
func hasMeta(p string) bool {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			i++
		case '*', '?', '[':
			return true
		}
	}
	return false
}

// unescape removes a pattern's escaping backslashes.
func unescape(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '\\' && i+1 < len(p) {
			i++
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// readNames lists a directory's entry names.
func readNames(fsys afero.Fs, dir string) ([]string, error) {
	f, err := fsys.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
