package sftp

import (
	"cmp"
	"context"
	"errors"
	"io/fs"
	"path"
	"slices"
	"strings"
	"syscall"

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
// names they match (at every part of a path), the listings and lookups
// made to find them (each an agent call), and the work of matching names
// against patterns (a name's length times its pattern part's, summed).
// A pattern part may be at most maxGlobPart bytes long.
const (
	maxGlobNames = 10_000
	maxGlobCalls = 1_000
	maxGlobSteps = 100_000_000
	maxGlobPart  = 1024
)

// errGlobTooMuch is a command whose patterns match more names, or need
// more listings, lookups or matching, than a command may have.
var errGlobTooMuch = errors.New("the command's patterns match too many names, or need too many directory reads")

// globber expands the words of one command line over a user's tree, as a
// shell does before it runs the command, within one budget for them all.
type globber struct {
	ctx   context.Context
	fs    afero.Fs
	calls int
	names int
	steps int
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
// pattern matches, sorted, written as the word writes them (relative to
// the root, "/", or from it); the word's text alone when it is no pattern
// or matches nothing (as sh leaves it without nullglob). Each
// "/"-separated part is matched on its own (globPattern); a literal part
// after a pattern must exist (an Lstat), a trailing "/" after one keeps
// directories only, and a "." or ".." part needs a directory before it,
// as the kernel's lookup does. A directory that cannot be listed matches
// nothing. It fails when the command's budget is spent, or its context
// ends.
func (g *globber) expand(w word) ([]string, error) {
	if !w.glob {
		return []string{w.text}, nil
	}
	parts := strings.Split(w.pattern, "/")
	found := []string{""} // paths as the word writes them
	globbed, check := false, ""
	for i, part := range parts {
		sep := "/"
		if i == 0 {
			sep = ""
		}
		if !hasMeta(part) {
			lit := unescape(part)
			for j := range found {
				found[j] += sep + lit
			}
			switch {
			case !globbed:
			case part != "":
				check = "exists"
			case i == len(parts)-1:
				check = "dir"
			}
			continue
		}
		if len(part) > maxGlobPart {
			return nil, errGlobTooMuch
		}
		pat := compilePart(part)
		globbed, check = true, ""
		var next []string
		for _, dir := range found {
			names, err := g.list(dir)
			if errors.Is(err, errGlobTooMuch) || g.ctx.Err() != nil {
				return nil, cmp.Or(g.ctx.Err(), err)
			}
			for k, name := range names {
				if k%256 == 255 && g.ctx.Err() != nil {
					return nil, g.ctx.Err()
				}
				if g.steps += (len(name) + 1) * (len(pat) + 1); g.steps > maxGlobSteps {
					return nil, errGlobTooMuch
				}
				if pat.match(name) {
					if g.names++; g.names > maxGlobNames {
						return nil, errGlobTooMuch
					}
					next = append(next, dir+sep+name)
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

// list lists the entry names of dir, a path as a word writes it.
func (g *globber) list(dir string) ([]string, error) {
	if err := checkAsWritten(g.fs, dir, g.call); err != nil {
		return nil, err
	}
	if err := g.call(); err != nil {
		return nil, err
	}
	f, err := g.fs.Open(path.Join("/", dir))
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
	if err := checkAsWritten(g.fs, p, g.call); err != nil {
		return false, budgetError(err)
	}
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

// budgetError is err if it ends an expansion (the budget, the context),
// else nil.
func budgetError(err error) error {
	if errors.Is(err, errGlobTooMuch) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// checkAsWritten checks what the kernel's lookup of p, a path as a
// client wrote it, asks and path.Clean hides: each part that a "." or
// ".." part follows must be a directory ("file/." is ENOTDIR, "missing/.."
// ENOENT). before, if set, runs before each lookup (a budget's count).
// Most paths hold no such part and cost nothing.
func checkAsWritten(fsys afero.Fs, p string, before func() error) error {
	parts := strings.Split(p, "/")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "." && parts[i] != ".." {
			continue
		}
		prefix := strings.Join(parts[:i], "/")
		if prefix == "" || parts[i-1] == "." || parts[i-1] == ".." {
			continue // the root, or a part already checked
		}
		if before != nil {
			if err := before(); err != nil {
				return err
			}
		}
		fi, err := fsys.Stat(path.Join("/", prefix))
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return &fs.PathError{Op: "lookup", Path: p, Err: syscall.ENOTDIR}
		}
	}
	return nil
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

// globPattern is one part of a path pattern, compiled: each element
// matches one byte (a literal, "?", a bracket expression's set) or, for
// "*", any run of bytes. Matching a name costs at most its length times
// the pattern's.
type globPattern []globElem

// globElem is one element of a globPattern.
type globElem struct {
	kind byte // '*', '?', '[' (set) or 0 (the byte c)
	c    byte
	set  *[256]bool
}

// compilePart compiles a pattern part as sh's pathname expansion reads it
// (fnmatch(3)): "*" any run of bytes, "?" any byte, a bracket expression
// "[...]" one byte of its set ("!" or "^" first negates it, as bash and
// glibc have it; "]" first is a member; "a-z" a range; "[:alpha:]" and the
// other classes of the C locale), "\" makes the next byte literal, and a
// "[" that opens no expression (unclosed, or with an unknown class) is
// itself.
func compilePart(p string) globPattern {
	var out globPattern
	for i := 0; i < len(p); {
		switch p[i] {
		case '*':
			out = append(out, globElem{kind: '*'})
			i++
		case '?':
			out = append(out, globElem{kind: '?'})
			i++
		case '[':
			if set, width, ok := compileBracket(p[i:]); ok {
				out = append(out, globElem{kind: '[', set: set})
				i += width
				continue
			}
			out = append(out, globElem{c: '['})
			i++
		case '\\':
			c, n := bracketByte(p, i)
			out = append(out, globElem{c: c})
			i += n
		default:
			out = append(out, globElem{c: p[i]})
			i++
		}
	}
	return out
}

// match reports whether name, one entry of a directory, matches. A name
// that starts with "." matches only a pattern that starts with a literal
// "." (FNM_PERIOD).
func (m globPattern) match(name string) bool {
	if strings.HasPrefix(name, ".") && (len(m) == 0 || m[0].kind != 0 || m[0].c != '.') {
		return false
	}
	px, nx := 0, 0
	starPx, starNx := -1, 0
	for nx < len(name) {
		if px < len(m) && m[px].kind == '*' {
			starPx, starNx = px, nx
			px++
			continue
		}
		if px < len(m) && m[px].matches(name[nx]) {
			px++
			nx++
			continue
		}
		if starPx < 0 {
			return false
		}
		starNx++ // the last "*" takes one more byte
		px, nx = starPx+1, starNx
	}
	for px < len(m) && m[px].kind == '*' {
		px++
	}
	return px == len(m)
}

// matches reports whether the element, not a "*", matches the byte c.
func (e globElem) matches(c byte) bool {
	switch e.kind {
	case '?':
		return true
	case '[':
		return e.set[c]
	default:
		return e.c == c
	}
}

// compileBracket compiles the bracket expression that p starts with: its
// set, its width in p, and whether p starts one at all.
func compileBracket(p string) (set *[256]bool, width int, ok bool) {
	set = new([256]bool)
	i := 1
	negate := i < len(p) && (p[i] == '!' || p[i] == '^')
	if negate {
		i++
	}
	for first := true; ; first = false {
		if i >= len(p) {
			return nil, 0, false
		}
		if p[i] == ']' && !first {
			if negate {
				for c := range set {
					set[c] = !set[c]
				}
			}
			return set, i + 1, true
		}
		if p[i] == '[' && i+1 < len(p) && p[i+1] == ':' {
			end := strings.Index(p[i+2:], ":]")
			if end < 0 {
				return nil, 0, false
			}
			name := p[i+2 : i+2+end]
			if _, known := inClass(name, 0); !known {
				return nil, 0, false
			}
			for c := range set {
				if in, _ := inClass(name, byte(c)); in {
					set[c] = true
				}
			}
			i += end + 4
			continue
		}
		lo, n := bracketByte(p, i)
		i += n
		if i+1 < len(p) && p[i] == '-' && p[i+1] != ']' {
			hi, n := bracketByte(p, i+1)
			i += 1 + n
			for c := int(lo); c <= int(hi); c++ {
				set[c] = true
			}
			continue
		}
		set[lo] = true
	}
}

// bracketByte is the byte at p[i], a backslash escape taken, and its
// width.
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
