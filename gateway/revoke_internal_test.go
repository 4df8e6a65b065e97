package gateway

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/config"
)

// TestCredentialRevoked: a session's login holds while the user exists,
// the hash or key it logged in with is still theirs and their mounts are
// the same; a hash rewritten with the same value, keys added, or mounts
// listed in another order change nothing.
func TestCredentialRevoked(t *testing.T) {
	key := func(seed byte) ssh.PublicKey {
		s := make([]byte, ed25519.SeedSize)
		s[0] = seed
		k, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(s).Public())
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k1, k2 := key(1), key(2)
	hash := []byte("$2a$10$0dpFMcElNIdnuOWc24Tu0etZdlvxE/kdYthC5JCobH9zWg1lGE9Z6")
	home := config.Mount{Path: "/", Agent: "embedded", Root: "alice"}
	api := config.Mount{Path: "/api", Agent: "remote", Root: "api"}
	mounts := []config.Mount{home, api}
	old := newUser("alice", hash, []ssh.PublicKey{k1}, mounts)
	pw, pk := passwordCredential(old), keyCredential(old, k1)
	readOnly := api
	readOnly.ReadOnly = true
	otherRoot := home
	otherRoot.Root = "alice2"
	tests := []struct {
		name string
		cred credential
		now  *user
		want string
	}{
		{"unchanged password", pw, newUser("alice", append([]byte(nil), hash...), nil, mounts), ""},
		{"mounts listed in another order", pw, newUser("alice", hash, nil, []config.Mount{api, home}), ""},
		{"password session, keys changed", pw, newUser("alice", hash, []ssh.PublicKey{k2}, mounts), ""},
		{"new hash", pw, newUser("alice", []byte("$2a$10$other"), nil, mounts), "the password of user alice changed"},
		{"new hash and mounts", pw, newUser("alice", []byte("$2a$10$other"), nil, []config.Mount{home}), "the password of user alice changed"},
		{"password login off", pw, newUser("alice", nil, []ssh.PublicKey{k1}, mounts), "password login of user alice was turned off"},
		{"user removed", pw, nil, "user alice was removed"},
		{"a mount removed", pw, newUser("alice", hash, nil, []config.Mount{home}), "the mounts of user alice changed"},
		{"a mount added", pw, newUser("alice", hash, nil, []config.Mount{home, api, {Path: "/b", Agent: "embedded", Root: "b"}}), "the mounts of user alice changed"},
		{"a mount made read-only", pw, newUser("alice", hash, nil, []config.Mount{home, readOnly}), "the mounts of user alice changed"},
		{"a mount's root moved", pk, newUser("alice", nil, []ssh.PublicKey{k1}, []config.Mount{otherRoot, api}), "the mounts of user alice changed"},
		{"key kept, another added", pk, newUser("alice", nil, []ssh.PublicKey{k2, k1}, mounts), ""},
		{"key session, password changed", pk, newUser("alice", []byte("$2a$10$other"), []ssh.PublicKey{k1}, mounts), ""},
		{"key replaced", pk, newUser("alice", nil, []ssh.PublicKey{k2}, mounts), "the key user alice logged in with is no longer authorized"},
		{"key user removed", pk, nil, "user alice was removed"},
	}
	for _, tt := range tests {
		if got := tt.cred.revoked("alice", tt.now); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

// abortFs records the TransferError of every file it opens.
type abortFs struct {
	afero.Fs
	aborted map[string]error
}

func (a *abortFs) OpenFile(name string, flag int, perm os.FileMode) (afero.File, error) {
	f, err := a.Fs.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &abortFile{File: f, fs: a}, nil
}

type abortFile struct {
	afero.File
	fs *abortFs
}

func (f *abortFile) TransferError(err error) { f.fs.aborted[f.Name()] = err }

// TestRevokedSessionFs: once a reload revoked a session's login, its
// filesystem refuses every operation with ErrRevoked and the reason, and
// touches nothing; a file open then can neither be read nor written, and
// an upload closed then is aborted, not committed. Before, all works and
// an upload closes without an abort.
func TestRevokedSessionFs(t *testing.T) {
	r := newRegistry(slog.New(slog.DiscardHandler), Limits{}, time.Now)
	s := &Session{ID: "7", Protocol: "sftp", r: r, log: r.log}
	alice := "alice"
	s.user.Store(&alice)
	mem := afero.NewMemMapFs()
	if err := afero.WriteFile(mem, "/old.txt", []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	inner := &abortFs{Fs: mem, aborted: make(map[string]error)}
	sfs := &sessionFs{Fs: inner, sess: s, metrics: newMetrics(), files: newFileLimits(0)}

	done, err := sfs.Create("/done.txt")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(done, "done"); err != nil {
		t.Fatal(err)
	}
	if err := done.Close(); err != nil {
		t.Fatal(err)
	}
	up, err := sfs.OpenFile("/up.txt", os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.Write([]byte("part")); err != nil {
		t.Fatal(err)
	}
	down, err := sfs.Open("/old.txt")
	if err != nil {
		t.Fatal(err)
	}

	why := "the password of user alice changed"
	s.revoked.Store(&why)
	revoked := func(op string, err error) {
		t.Helper()
		if !errors.Is(err, ErrRevoked) || !strings.Contains(err.Error(), why) {
			t.Errorf("%s after the revocation: %v, want ErrRevoked and %q", op, err, why)
		}
	}
	_, err = up.Write([]byte("more"))
	revoked("Write", err)
	_, err = up.WriteAt([]byte("more"), 4)
	revoked("WriteAt", err)
	_, err = up.(io.ReaderFrom).ReadFrom(strings.NewReader("more"))
	revoked("ReadFrom", err)
	_, err = down.Read(make([]byte, 3))
	revoked("Read", err)
	_, err = down.ReadAt(make([]byte, 3), 0)
	revoked("ReadAt", err)
	up.Close()
	down.Close()
	if err := inner.aborted["/up.txt"]; !errors.Is(err, ErrRevoked) {
		t.Errorf("the upload open at the revocation was closed with abort %v, want ErrRevoked", err)
	}
	if err, ok := inner.aborted["/done.txt"]; ok {
		t.Errorf("the upload closed before the revocation was aborted: %v", err)
	}

	_, err = sfs.OpenFile("/new.txt", os.O_WRONLY|os.O_CREATE, 0o644)
	revoked("OpenFile", err)
	_, err = sfs.Open("/old.txt")
	revoked("Open", err)
	_, err = sfs.Create("/new.txt")
	revoked("Create", err)
	revoked("Mkdir", sfs.Mkdir("/d", 0o755))
	revoked("MkdirAll", sfs.MkdirAll("/d/e", 0o755))
	revoked("Remove", sfs.Remove("/old.txt"))
	revoked("RemoveAll", sfs.RemoveAll("/old.txt"))
	revoked("Rename", sfs.Rename("/old.txt", "/renamed.txt"))
	revoked("Chmod", sfs.Chmod("/old.txt", 0o600))
	revoked("Chown", sfs.Chown("/old.txt", 1, 1))
	revoked("Chtimes", sfs.Chtimes("/old.txt", time.Unix(0, 0), time.Unix(0, 0)))
	revoked("Lchtimes", sfs.Lchtimes("/old.txt", time.Unix(0, 0), time.Unix(0, 0)))
	revoked("Symlink", sfs.SymlinkIfPossible("/old.txt", "/link"))
	revoked("Link", sfs.Link("/old.txt", "/hard"))
	_, err = sfs.Stat("/old.txt")
	revoked("Stat", err)
	_, _, err = sfs.LstatIfPossible("/old.txt")
	revoked("Lstat", err)
	_, err = sfs.ReadlinkIfPossible("/old.txt")
	revoked("Readlink", err)
	_, err = sfs.Hash(context.Background(), "/old.txt", backend.SHA256, 0, 0)
	revoked("Hash", err)
	_, err = sfs.StatFS(context.Background(), "/")
	revoked("StatFS", err)

	var names []string
	if err := afero.Walk(mem, "/", func(p string, _ os.FileInfo, err error) error {
		names = append(names, p)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names, " "); got != "/ /done.txt /old.txt /up.txt" {
		t.Errorf("the filesystem after the revoked operations holds %s", got)
	}
	if fi, err := mem.Stat("/old.txt"); err != nil || fi.Mode() != 0o644 {
		t.Errorf("/old.txt after the revoked chmod: %v, %v", fi, err)
	}
}
