package ftpserver

// Wildcards in listings (upgate fork, patch 22): LIST, NLST and STAT of a
// path whose last component holds "*", "?" or "{" list the entries of the
// directory before it whose names match, as vsftpd's handle_dir_common and
// vsf_filename_passes_filter do (classic clients' mget and mdelete send
// "NLST *.txt"). A path that is a directory is listed outright, whatever
// its name; only the last component is a pattern, so the directory part is
// resolved (and cleaned of "..") as any other path.

import (
	"strings"
	"unicode/utf8"
)

// globSteps is how many steps matching one name against a pattern may take;
// a name that needs more does not match (vsftpd stops at 1,000 of its
// own), so that a pattern of many {,} groups or stars cannot make a
// listing spin.
const globSteps = 10_000

// listGlob is a listing argument's pattern: the directory as the client
// spelled it ("" for the working directory) and the last component.
type listGlob struct {
	dir     string
	pattern string
	dotted  bool // names starting with "." match too (ls -a, or the pattern starts with ".")
}

// splitGlob splits a listing argument (without options) whose last
// component is a pattern; ok is false for any other argument, and for one
// that ends in "/" (a directory, patch 21).
func splitGlob(arg string) (dir, pattern string, ok bool) {
	if HasDirSlash(arg) {
		return "", "", false
	}

	i := strings.LastIndexByte(arg, '/')
	if !strings.ContainsAny(arg[i+1:], "*?{") {
		return "", "", false
	}

	switch {
	case i < 0:
		return "", arg, true
	case i == 0:
		return "/", arg[1:], true
	default:
		return arg[:i], arg[i+1:], true
	}
}

// globOf is the pattern of a LIST, NLST or STAT argument (options and
// path), unless the path is none or names a directory (listed outright).
func (c *clientHandler) globOf(options, arg string) (listGlob, bool) {
	dir, pattern, ok := splitGlob(arg)
	if !ok {
		return listGlob{}, false
	}

	if info, err := c.driver.Stat(c.absPath(arg)); err == nil && info.IsDir() {
		return listGlob{}, false
	}

	return listGlob{dir: dir, pattern: pattern, dotted: strings.Contains(options, "a") || pattern[0] == '.'}, true
}

// dirArg is the glob's directory as an argument that must name a
// directory (statArg's trailing slash rule): a file there is ENOTDIR.
func (g listGlob) dirArg() string {
	switch {
	case g.dir == "":
		return "./"
	case HasDirSlash(g.dir):
		return g.dir
	default:
		return g.dir + "/"
	}
}

// matches reports whether an entry's name matches the pattern. A name
// starting with "." matches only with ls -a or a pattern starting with
// ".", as in vsftpd and in a shell: "mdelete *" leaves dotfiles alone.
func (g listGlob) matches(name string) bool {
	if name == "" || (name[0] == '.' && !g.dotted) {
		return false
	}

	steps := globSteps

	return globMatch(g.pattern, name, &steps)
}

// globMatch reports whether name matches pattern as vsftpd reads one: "*"
// any run of characters, "?" one character, "{a,b}" either alternative
// (not nested; a "{" without a "}" after it is itself), anything else
// itself ("[" included; there are no escapes). steps is the budget left.
func globMatch(pattern, name string, steps *int) bool {
	open := strings.IndexByte(pattern, '{')
	if open < 0 {
		return wildMatch(pattern, name, steps)
	}

	end := strings.IndexByte(pattern[open:], '}')
	if end < 0 {
		return wildMatch(pattern, name, steps)
	}

	end += open
	rest := pattern[end+1:]

	for _, alt := range strings.Split(pattern[open+1:end], ",") {
		*steps -= len(pattern) // the expansion's cost
		if *steps < 0 {
			return false
		}

		if globMatch(pattern[:open]+alt+rest, name, steps) {
			return true
		}
	}

	return false
}

// wildMatch matches "*" and "?" (by UTF-8 character; an invalid byte is
// one) and every other byte as itself, backtracking to the last star only,
// so that a match takes at most len(pattern)*len(name) steps.
func wildMatch(pattern, name string, steps *int) bool {
	px, nx := 0, 0
	starPx, starNx := -1, -1

	for px < len(pattern) || nx < len(name) {
		if *steps--; *steps < 0 {
			return false
		}

		if px < len(pattern) {
			switch ch := pattern[px]; {
			case ch == '*':
				starPx, starNx = px, nx
				px++

				continue
			case ch == '?' && nx < len(name):
				_, w := utf8.DecodeRuneInString(name[nx:])
				px, nx = px+1, nx+w

				continue
			case ch != '?' && nx < len(name) && name[nx] == ch:
				px, nx = px+1, nx+1

				continue
			}
		}

		if starPx < 0 || starNx >= len(name) {
			return false
		}

		_, w := utf8.DecodeRuneInString(name[starNx:])
		starNx += w
		px, nx = starPx+1, starNx
	}

	return true
}
