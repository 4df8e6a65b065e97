package backend

// Fuzz tests of the gateway's path arithmetic: the user's namespace
// (userPath), the agent's (agentPath), symbolic link targets (escapes,
// relPath) and the mount table (MountFs.resolve, synthetic).

import (
	"context"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/afero"
)

// checkUserPath fails unless p is what userPath may return: absolute,
// clean, without a ".." element.
func checkUserPath(t *testing.T, name, p string) {
	t.Helper()
	if !path.IsAbs(p) || path.Clean(p) != p {
		t.Fatalf("userPath(%q) = %q: not absolute and clean", name, p)
	}
	if strings.Contains(p+"/", "/../") {
		t.Fatalf("userPath(%q) = %q climbs with \"..\"", name, p)
	}
}

func FuzzUserPath(f *testing.F) {
	for _, s := range [][2]string{
		{"", ""}, {"/", "a"}, {"a/b", "../c"}, {"..", "/"}, {"../../etc/passwd", "../../x"},
		{"/a/./b/", "./b"}, {"a//b", "a/../../b"}, {"/x/y/z", "/x/q"}, {`a\..\b`, ".."},
		{"/a/b", "/a/b/c"}, {"/a/b/c", "/a"}, {"/ab", "/a/b"},
	} {
		f.Add(s[0], s[1])
	}
	g := NewGRPCFs(context.Background(), nil, Options{Root: "u"})
	f.Fuzz(func(t *testing.T, name, other string) {
		p := userPath(name)
		checkUserPath(t, name, p)
		if q := userPath(p); q != p {
			t.Fatalf("userPath is not idempotent: %q -> %q -> %q", name, p, q)
		}

		// The agent path stays under the filesystem's root.
		if a := g.agentPath(name); a != "u" && !strings.HasPrefix(a, "u/") {
			t.Fatalf("agentPath(%q) = %q, outside the root \"u\"", name, a)
		} else if slices.Contains(strings.Split(a, "/"), "..") || path.Clean(a) != a {
			t.Fatalf("agentPath(%q) = %q is not a clean path without \"..\"", name, a)
		}

		// An absolute symlink target is stored relative to the link's
		// directory: it must resolve back to the target and never be
		// refused as an escape.
		dir, target := p, userPath(other)
		rel := relPath(dir, target)
		if got := path.Join(dir, rel); got != target {
			t.Fatalf("relPath(%q, %q) = %q, which resolves to %q", dir, target, rel, got)
		}
		if escapes(dir, rel) {
			t.Fatalf("relPath(%q, %q) = %q is refused as an escape", dir, target, rel)
		}
		if rel != "." && path.Clean(rel) != rel {
			t.Fatalf("relPath(%q, %q) = %q is not clean", dir, target, rel)
		}

		// escapes agrees with resolving the relative target step by step
		// from dir below a sentinel directory: it escapes exactly when
		// some step leaves the sentinel.
		const sentinel = "/sentinel"
		want, cur := false, sentinel+dir
		for _, e := range strings.Split(other, "/") {
			cur = path.Join(cur, e)
			if cur != sentinel && !strings.HasPrefix(cur, sentinel+"/") {
				want = true
				break
			}
		}
		if got := escapes(dir, other); got != want {
			t.Fatalf("escapes(%q, %q) = %v, want %v", dir, other, got, want)
		}
	})
}

func FuzzMountResolve(f *testing.F) {
	for _, s := range []string{
		"", "/", "api", "/api", "/api/", "/apis", "/api/../srv/x/y", "/srv", "/srv/x", "/srv/xy",
		"/srv/x/../../api/z", "../api", "/a/b/c", "srv//x/./y", "/srv/x/..",
	} {
		f.Add(s)
	}
	mk := func(paths ...string) *MountFs {
		var ms []Mount
		for _, p := range paths {
			ms = append(ms, Mount{Path: p, Fs: afero.NewMemMapFs()})
		}
		m, err := NewMountFs(ms)
		if err != nil {
			f.Fatal(err)
		}
		return m
	}
	full := mk("/", "/api", "/srv/x")
	partial := mk("/api", "/srv/x")

	f.Fuzz(func(t *testing.T, name string) {
		p := userPath(name)

		// With "/" mounted every path resolves, to the longest mount
		// whose Path holds it.
		mnt, rel, ok := full.resolve(name)
		if !ok {
			t.Fatalf("resolve(%q): no mount, though \"/\" is mounted", name)
		}
		if !within(p, mnt.Path) {
			t.Fatalf("resolve(%q) = mount %q, which does not hold %q", name, mnt.Path, p)
		}
		for _, other := range full.mounts {
			if within(p, other.Path) && len(other.Path) > len(mnt.Path) {
				t.Fatalf("resolve(%q) = mount %q, but %q is longer and holds %q", name, mnt.Path, other.Path, p)
			}
		}
		if !path.IsAbs(rel) || path.Clean(rel) != rel {
			t.Fatalf("resolve(%q): rel %q is not absolute and clean", name, rel)
		}
		if got := path.Join(mnt.Path, rel); got != p {
			t.Fatalf("resolve(%q) = %q + %q, which joins to %q, not %q", name, mnt.Path, rel, got, p)
		}
		if full.synthetic(p) {
			t.Fatalf("synthetic(%q) with \"/\" mounted", p)
		}

		// Without "/": a path resolves iff a mount holds it, and the
		// directories above mount points that none holds are synthetic.
		_, _, ok = partial.resolve(name)
		held, above := false, false
		for _, m := range []string{"/api", "/srv/x"} {
			held = held || within(p, m)
			above = above || within(m, p)
		}
		if ok != held {
			t.Fatalf("partial resolve(%q) ok = %v, want %v", name, ok, held)
		}
		if got := partial.synthetic(p); got != (!held && above) {
			t.Fatalf("partial synthetic(%q) = %v, want %v", p, got, !held && above)
		}
	})
}
