package hooks

import (
	"errors"
	"path"
	"strings"
)

// Match reports whether name, a slash-separated path relative to the
// agent root ("app/Http/Kernel.php"), matches pattern. The pattern is
// matched against the whole path, one segment per segment: within a
// segment, path.Match's syntax applies (* ? [a-z] \x; * never crosses a
// slash), and a segment that is exactly ** matches any number of
// segments, none included. So "**/*.php" matches "index.php" and
// "app/Models/User.php", "composer.json" only the file at the root,
// "vendor/**" everything under vendor and vendor itself, and
// "resources/views/**/*.blade.php" every Blade template.
//
// A malformed pattern matches nothing; Validate refuses it.
func Match(pattern, name string) bool {
	return matchSegments(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

func matchSegments(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for len(pat) > 0 && pat[0] == "**" {
				pat = pat[1:]
			}
			if len(pat) == 0 {
				return true
			}
			for i := range len(name) + 1 {
				if matchSegments(pat, name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if ok, err := path.Match(pat[0], name[0]); !ok || err != nil {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}

// maxDoubleStars bounds the ** segments of one pattern: each multiplies
// the work of a match by the depth of the path.
const maxDoubleStars = 4

// checkPattern reports why a glob is malformed.
func checkPattern(p string) error {
	switch {
	case p == "":
		return errors.New("empty")
	case strings.HasPrefix(p, "/"):
		return errors.New("absolute: patterns are relative to the agent root")
	}
	stars := 0
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return errors.New("empty path segment (// or a trailing /)")
		case ".", "..":
			return errors.New(". and .. segments never match: paths are clean")
		case "**":
			if stars++; stars > maxDoubleStars {
				return errors.New("more than 4 ** segments")
			}
			continue
		}
		if _, err := path.Match(seg, ""); err != nil {
			return err
		}
	}
	return nil
}
