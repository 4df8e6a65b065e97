package sftp_test

import (
	"encoding/binary"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/upgate/upgate/internal/agenttest"
)

// TestBadRequests: over a real agent, a request of a type the server
// does not know (SFTP v6's LINK in a v3 session, or no type at all) is
// answered OP_UNSUPPORTED and the session goes on, its upload too; a
// request that cannot be read (a WRITE cut short after its id) is
// answered BAD_MESSAGE and ends the session, whose upload in progress is
// aborted: the old file stays, whole, and no temp file is left. The fork's
// TestForkBadRequests shows the order of the answers.
func TestBadRequests(t *testing.T) {
	const (
		fxBadMessage    = 5
		fxOpUnsupported = 8
	)
	e := start(t, nil)
	target := filepath.Join(e.UserDir("alice"), "keep.txt")
	mustWrite(t, target, []byte("old content"))
	p := newRawSFTP(t, sshClient(t, e, "alice"))
	h := p.openHandle("/keep.txt", fxfWrite|fxfCreat|fxfTrunc)
	if r := p.writeReply(h, 0, []byte("new ")); r.code != fxOK {
		t.Fatalf("WRITE: %v", r)
	}
	for _, typ := range []byte{21, 99} {
		r := p.req(typ, sshString(sshString(nil, "/keep.txt"), "/other"))
		if r.typ != fxpStatus || r.code != fxOpUnsupported || !strings.Contains(r.msg, "unknown request type") {
			t.Errorf("request type %d: %v, want OP_UNSUPPORTED", typ, r)
		}
	}
	if r := p.writeReply(h, 4, []byte("content")); r.code != fxOK {
		t.Fatalf("WRITE after the unknown requests: %v", r)
	}
	if got := mustRead(t, target); string(got) != "old content" {
		t.Fatalf("target during the upload: %q", got)
	}

	// A WRITE cut short: its handle's length says more than follows.
	id := p.post(fxpWrite, binary.BigEndian.AppendUint32(nil, 1000))
	typ, data := p.reply(id)
	if code, msg := p.status(typ, data); code != fxBadMessage || !strings.Contains(msg, "malformed SSH_FXP_WRITE request") {
		t.Errorf("the WRITE cut short: status %d %q, want BAD_MESSAGE", code, msg)
	}
	ended := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := p.r.Read(b[:])
		ended <- err
	}()
	select {
	case err := <-ended:
		if !errors.Is(err, io.EOF) {
			t.Errorf("after BAD_MESSAGE the channel gave %v, want its end", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end after the malformed request")
	}
	if !eventually(10*time.Second, func() bool { return len(agenttest.TempFilesUnder(t, e.UserDir("alice"))) == 0 }) {
		t.Errorf("temp files left: %v", agenttest.TempFilesUnder(t, e.UserDir("alice")))
	}
	if got := mustRead(t, target); string(got) != "old content" {
		t.Errorf("target after the session ended mid-upload: %q, want the old content", got)
	}
	e.AgentIdle(t)
}
