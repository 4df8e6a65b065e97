package upgate_test

import (
	"bufio"
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestDockerfileBuild keeps the Dockerfile true without a Docker engine: it
// runs the Dockerfile's one "RUN ... go build" line on the host, the way the
// build stage would, and checks that the result is a static ELF binary (the
// final image has no libc) that reports the VERSION build argument. It also
// checks that the final stage is a static base image, runs as a non-root
// user, and ships the binary this line builds.
func TestDockerfileBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the upgate binary; skipped with -short")
	}
	const version = "test-version"

	stages := parseDockerfile(t, "Dockerfile")

	// Exactly one build line, wherever it is.
	var build *instruction
	var buildStage *stage
	for _, st := range stages {
		for i, in := range st.instrs {
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
				if build != nil {
					t.Fatalf("Dockerfile:%d: a second RUN ... go build line (first at line %d); keep exactly one", in.line, build.line)
				}
				build, buildStage = &st.instrs[i], st
			}
		}
	}
	if build == nil {
		t.Fatal("Dockerfile: no RUN ... go build line")
	}

	// The final stage: a static base, a non-root USER, and the binary
	// copied from the build stage's -o path.
	final := stages[len(stages)-1]
	if final == buildStage {
		t.Fatalf("Dockerfile: the go build (line %d) runs in the final stage; build in its own stage", build.line)
	}
	if !staticBase(final.base) {
		t.Errorf("Dockerfile:%d: final stage FROM %s: want scratch or a static base (distroless/static)", final.line, final.base)
	}
	user := ""
	for _, in := range final.instrs {
		if in.cmd == "USER" {
			user = in.args
		}
	}
	if uid, gid, _ := strings.Cut(user, ":"); uid == "" || uid == "root" || uid == "0" || gid == "root" || gid == "0" {
		t.Errorf("Dockerfile: final stage USER %q: want an explicit non-root user and group (65532:65532)", user)
	}

	// The build command: leading NAME=value assignments, then go and its
	// arguments. ${VERSION} is the only variable the test knows.
	line := strings.NewReplacer("${VERSION}", version, "$VERSION", version).Replace(build.args)
	if strings.Contains(line, "$") {
		t.Fatalf("Dockerfile:%d: unexpanded variable in %q (only ${VERSION} is known)", build.line, line)
	}
	words := splitWords(t, line)
	var assigns []string
	for len(words) > 0 && isAssignment(words[0]) {
		assigns, words = append(assigns, words[0]), words[1:]
	}
	if len(words) < 2 || words[0] != "go" || words[1] != "build" {
		t.Fatalf("Dockerfile:%d: want [NAME=value ...] go build ..., got %q", build.line, build.args)
	}
	args := words[1:]

	bin := filepath.Join(t.TempDir(), "upgate")
	outPath := ""
	for i, a := range args {
		switch {
		case a == "-o" && i+1 < len(args):
			outPath, args[i+1] = args[i+1], bin
		case strings.HasPrefix(a, "-o="):
			outPath, args[i] = strings.TrimPrefix(a, "-o="), "-o="+bin
		}
	}
	if outPath == "" {
		t.Fatalf("Dockerfile:%d: go build has no -o path", build.line)
	}
	copied := false
	for _, in := range final.instrs {
		f := strings.Fields(in.args)
		if in.cmd == "COPY" && len(f) >= 3 && slices.Contains(f, "--from="+buildStage.name) && f[len(f)-2] == outPath {
			copied = true
		}
	}
	if !copied {
		t.Errorf("Dockerfile: final stage has no COPY --from=%s %s <dest>: the image would not ship the binary this line builds", buildStage.name, outPath)
	}

	// Environment as in the golang image: cgo on by default (it has gcc),
	// native GOOS/GOARCH, no GOFLAGS except -buildvcs=false, because
	// .dockerignore leaves .git out of the build context. The Dockerfile's
	// own assignments come last and so win.
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go command: %v", err)
	}
	cmd := exec.CommandContext(t.Context(), goBin, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1", "GOOS=", "GOARCH=", "GOFLAGS=-buildvcs=false")
	cmd.Env = append(cmd.Env, assigns...)
	t.Logf("Dockerfile:%d: env %q, go %q", build.line, assigns, args)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("output is not an ELF binary: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("binary has a PT_INTERP program header (dynamic loader): not statically linked; is CGO_ENABLED=0 set?")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil || len(libs) > 0 {
		t.Errorf("binary imports shared libraries %q (err %v): not statically linked; is CGO_ENABLED=0 set?", libs, err)
	}
	if fi, err := os.Stat(bin); err == nil {
		t.Logf("binary: %d bytes (%.1f MiB)", fi.Size(), float64(fi.Size())/(1<<20))
	}

	out, err := exec.CommandContext(t.Context(), bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", bin, err, out)
	}
	if !strings.Contains(string(out), version) {
		t.Errorf("upgate version printed %q, want it to contain %q: the -X ldflag does not reach upgate.version", strings.TrimSpace(string(out)), version)
	}
}

type instruction struct {
	line int    // line the instruction starts on
	cmd  string // upper case: RUN, COPY, ...
	args string // the rest, continuation lines joined with a space
}

type stage struct {
	line   int
	base   string // image after FROM
	name   string // AS name, or the stage index
	instrs []instruction
}

// parseDockerfile splits a Dockerfile into stages of instructions. It knows
// what this repository's Dockerfile uses: comments, blank lines, backslash
// continuations (comment lines inside them are dropped, as Docker does) and
// FROM [--platform=...] image [AS name].
func parseDockerfile(t *testing.T, path string) []*stage {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var stages []*stage
	var cur instruction
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		if cur.line == 0 {
			cur.line = n
		}
		body, more := strings.CutSuffix(text, `\`)
		cur.args = strings.TrimSpace(cur.args + " " + strings.TrimSpace(body))
		if more {
			continue
		}
		cmd, args, _ := strings.Cut(cur.args, " ")
		in := instruction{line: cur.line, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		cur = instruction{}
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			if len(f) == 0 {
				t.Fatalf("%s:%d: FROM without an image", path, in.line)
			}
			st := &stage{line: in.line, base: f[0], name: strconv.Itoa(len(stages))}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.cmd == "ARG" {
				continue // global ARG before the first FROM
			}
			t.Fatalf("%s:%d: %s before the first FROM", path, in.line, in.cmd)
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur.line != 0 {
		t.Fatalf("%s:%d: file ends inside a continued line", path, cur.line)
	}
	if len(stages) == 0 {
		t.Fatalf("%s: no FROM", path)
	}
	return stages
}

// splitWords splits a shell command line into words, honouring single and
// double quotes and backslash escapes outside single quotes. It does no
// expansion: variables are substituted before.
func splitWords(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var w strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			w.WriteRune(r)
			escaped = false
		case r == '\\' && quote != '\'':
			escaped, inWord = true, true
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '"' || r == '\'':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case strings.ContainsRune(";&|<>()`", r):
			t.Fatalf("shell operator %q in %q: keep the build line a single command", r, s)
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		t.Fatalf("unterminated quote or escape in %q", s)
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}

// isAssignment reports whether w is a shell NAME=value word.
func isAssignment(w string) bool {
	name, _, ok := strings.Cut(w, "=")
	if !ok || name == "" {
		return false
	}
	for i, r := range name {
		if r != '_' && !('A' <= r && r <= 'Z') && !('a' <= r && r <= 'z') && (i == 0 || !('0' <= r && r <= '9')) {
			return false
		}
	}
	return true
}

// staticBase reports whether an image has no C library for a binary to
// link against: scratch, or a "static" image such as
// gcr.io/distroless/static-debian12 or cgr.dev/chainguard/static.
func staticBase(image string) bool {
	if image == "scratch" {
		return true
	}
	repo := image
	if i := strings.LastIndex(repo, "/"); i >= 0 {
		repo = repo[i+1:]
	}
	return strings.HasPrefix(repo, "static")
}
