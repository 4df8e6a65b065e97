package sftp

import (
	"cmp"
	"context"
	"errors"
	"path"
	"slices"
	"strings"

	"github.com/spf13/afero"
)

// word is one word of an exec command line, split as a POSIX shell splits
// it: text is the word with its quotes and backslashes removed, a leading
// unquoted "~" (the user's home, "/" here) expanded; pattern is the same
// word as a pattern for matchName, its quoted or escaped bytes escaped
// with "\", and glob says an unquoted "*", "?" or "[" makes it one.
type word struct {
	text, pattern string
	glob          bool
}

// splitWords splits a command line into words (see word) as a POSIX
// shell would for plain words, single and double quotes and backslashes;
// nothing is expanded but a leading "~".
func splitWords(s string) ([]word, error) {
	var words []word
	var text, pat strings.Builder
	inWord, glob, quote := false, false, byte(0)
	literal := func(c byte) { // a byte that is no pattern character
		text.WriteByte(c)
		if strings.IndexByte(`*?[]\!^-`, c) >= 0 {
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

// What one command's patterns may cost, all its words together: the
// names they match, and the listings and lookups made to find them (each
// an agent call).
const (
	maxGlobNames = 10_000
	maxGlobCalls = 1_000
)

// errGlobTooMuch is a command whose patterns match more names, or need
// more listings and lookups, than a command may have.
var errGlobTooMuch = errors.New("the command's patterns match too many names, or need too many directory reads")

// globber expands the words of one command line over a user's tree, as a
// shell does before it runs the command, within one budget for them all.
type globber struct {
	ctx      context.Context
	fs       afero.Fs
	maxNames int // 0: maxGlobNames
	calls    int
	names    int
}

// expandAll expands every word in turn.
func (g *globber) expandAll(words []word) ([]string, error) {
	var out []string
	for _, w := range words {
		names, err := g.expand(w)
		if err != nil {
			return nil, err
		}
		out = append(out, names...)
	}
	return out, nil
}

// expand is what a shell makes of a word: the paths of the tree that its
// pattern matches, sorted, written relative to the root ("/") as the word
// is; the word's text alone when it is no pattern or matches nothing (as
// sh leaves it without nullglob). Each "/"-separated part is matched on
// its own (matchName); a literal part after a pattern must exist (an
// Lstat), and a trailing "/" after one keeps directories only. A
// directory that cannot be listed matches nothing. It fails when the
// command's budget is spent, or its context ends.
func (g *globber) expand(w word) ([]string, error) {
	if !w.glob {
		return []string{w.text}, nil
	}
	parts := strings.Split(w.pattern, "/")
	found := []string{""} // paths as the word writes them
	if strings.HasPrefix(w.pattern, "/") {
		found, parts = []string{"/"}, parts[1:]
	}
	globbed, check := false, ""
	for i, part := range parts {
		switch {
		case part == "": // "a//b", or a trailing "/"
			for j := range found {
				found[j] = joinWord(found[j], "")
			}
			if globbed && i == len(parts)-1 {
				check = "dir"
			}
			continue
		case !hasMeta(part):
			lit := unescape(part)
			for j := range found {
				found[j] = joinWord(found[j], lit)
			}
			if globbed {
				check = "exists"
			}
			continue
		}
		globbed, check = true, ""
		var next []string
		for _, dir := range found {
			names, err := g.list(path.Join("/", dir))
			if errors.Is(err, errGlobTooMuch) || g.ctx.Err() != nil {
				return nil, cmp.Or(g.ctx.Err(), err)
			}
			for _, name := range names {
				if matchName(part, name) {
					if err := g.count(); err != nil {
						return nil, err
					}
					next = append(next, joinWord(dir, name))
				}
			}
		}
		found = next
		if len(found) == 0 {
			return []string{w.text}, nil
		}
	}
	if check != "" {
		var kept []string
		for _, p := range found {
			ok, err := g.keep(p, check == "dir")
			if err != nil {
				return nil, err
			}
			if ok {
				kept = append(kept, p)
			}
		}
		if found = kept; len(found) == 0 {
			return []string{w.text}, nil
		}
	}
	slices.Sort(found)
	return found, nil
}

// count counts a name matched against the budget.
func (g *globber) count() error {
	g.names++
	if g.names > cmp.Or(g.maxNames, maxGlobNames) {
		return errGlobTooMuch
	}
	return nil
}

// call counts a listing or lookup against the budget.
func (g *globber) call() error {
	if err := g.ctx.Err(); err != nil {
		return err
	}
	g.calls++
	if g.calls > maxGlobCalls {
		return errGlobTooMuch
	}
	return nil
}

// list lists a directory's entry names.
func (g *globber) list(dir string) ([]string, error) {
	if err := g.call(); err != nil {
		return nil, err
	}
	f, err := g.fs.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// keep says whether p, as a word writes it, names something (its Lstat,
// as a shell's glob tests a literal part), or a directory (a Stat) when
// dir is set.
func (g *globber) keep(p string, dir bool) (bool, error) {
	if err := g.call(); err != nil {
		return false, err
	}
	name := path.Join("/", p)
	if dir {
		fi, err := g.fs.Stat(name)
		return err == nil && fi.IsDir(), nil
	}
	var err error
	if l, ok := g.fs.(afero.Lstater); ok {
		_, _, err = l.LstatIfPossible(name)
	} else {
		_, err = g.fs.Stat(name)
	}
	return err == nil, nil
}

// joinWord appends name to a path as written in a word.
func joinWord(dir, name string) string {
	if dir == "" || strings.HasSuffix(dir, "/") {
		return dir + name
	}
	return dir + "/" + name
}

// hasMeta reports whether a pattern holds an unescaped "*", "?" or "[".
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

// matchName reports whether name, one entry of a directory, matches the
// pattern p, one part of a path, as sh's pathname expansion matches it
// (fnmatch(3) with FNM_PERIOD): "*" any run of bytes, "?" any byte, a
// bracket expression "[...]" one byte of its set ("!" or "^" first
// negates it, "]" first is a member, "a-z" a range, "[:alpha:]" and the
// other classes of the C locale), "\" makes the next byte literal, and a
// "[" that opens no expression is itself. A name that starts with "."
// matches only a pattern that starts with a literal ".".
func matchName(p, name string) bool {
	if strings.HasPrefix(name, ".") && !strings.HasPrefix(p, ".") {
		return false
	}
	px, nx := 0, 0
	starPx, starNx := -1, 0
	for nx < len(name) {
		if px < len(p) && p[px] == '*' {
			starPx, starNx = px, nx
			px++
			continue
		}
		if px < len(p) {
			if width, ok := matchOne(p, px, name[nx]); ok {
				px += width
				nx++
				continue
			}
		}
		if starPx < 0 {
			return false
		}
		starNx++ // the last "*" takes one more byte
		px, nx = starPx+1, starNx
	}
	for px < len(p) && p[px] == '*' {
		px++
	}
	return px == len(p)
}

// matchOne matches the pattern element at p[px] (not "*") against the
// byte c: its width in p, and whether c matches.
func matchOne(p string, px int, c byte) (width int, ok bool) {
	switch p[px] {
	case '?':
		return 1, true
	case '[':
		if width, ok, valid := matchBracket(p[px:], c); valid {
			return width, ok
		}
		return 1, c == '['
	case '\\':
		if px+1 < len(p) {
			return 2, c == p[px+1]
		}
		return 1, c == '\\'
	default:
		return 1, c == p[px]
	}
}

// matchBracket matches the bracket expression that p starts with against
// c: its width, whether c is in its set, and whether p starts one at all
// (an unclosed "[" or an unknown class does not).
func matchBracket(p string, c byte) (width int, ok, valid bool) {
	i := 1
	negate := i < len(p) && (p[i] == '!' || p[i] == '^')
	if negate {
		i++
	}
	in := false
	for first := true; ; first = false {
		if i >= len(p) {
			return 0, false, false
		}
		if p[i] == ']' && !first {
			return i + 1, in != negate, true
		}
		if p[i] == '[' && i+1 < len(p) && p[i+1] == ':' {
			end := strings.Index(p[i+2:], ":]")
			if end < 0 {
				return 0, false, false
			}
			member, known := inClass(p[i+2:i+2+end], c)
			if !known {
				return 0, false, false
			}
			in = in || member
			i += end + 4
			continue
		}
		lo, n := bracketByte(p, i)
		i += n
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			hi, n := bracketByte(p, i+1)
			i += 1 + n
			in = in || (lo <= c && c <= hi)
			continue
		}
		in = in || c == lo
	}
}

// bracketByte is the byte at p[i] in a bracket expression, a backslash
// escape taken, and its width.
func bracketByte(p string, i int) (byte, int) {
	if p[i] == '\\' && i+1 < len(p) {
		return p[i+1], 2
	}
	return p[i], 1
}

// inClass reports whether c is in the character class name of the C
// locale ("alpha", "digit", ...); known is false for a name that is none.
func inClass(name string, c byte) (in, known bool) {
	lower, upper, digit := 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9'
	switch name {
	case "alpha":
		return lower || upper, true
	case "digit":
		return digit, true
	case "alnum":
		return lower || upper || digit, true
	case "upper":
		return upper, true
	case "lower":
		return lower, true
	case "space":
		return c == ' ' || '\t' <= c && c <= '\r', true
	case "blank":
		return c == ' ' || c == '\t', true
	case "punct":
		return c > ' ' && c < 0x7f && !lower && !upper && !digit, true
	case "print":
		return c >= ' ' && c < 0x7f, true
	case "graph":
		return c > ' ' && c < 0x7f, true
	case "cntrl":
		return c < ' ' || c == 0x7f, true
	case "xdigit":
		return digit || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F', true
	}
	return false, false
}
