package sftp

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/gateway"
)

// session serves one "session" channel: the sftp subsystem, or one of the
// exec commands IDEs send; everything else is refused at once with a
// reason. exit-status is sent before the channel is closed, for the
// subsystem too (serveSFTP leaves the channel open for it).
func (c *conn) session(ch ssh.Channel, reqs <-chan *ssh.Request, login *gateway.Login) {
	defer ch.Close()
	c.mu.Lock()
	if c.channels == nil {
		c.channels = make(map[ssh.Channel]struct{})
	}
	c.channels[ch] = struct{}{} // for goodbye
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.channels, ch)
		c.mu.Unlock()
	}()
	log := c.sess.Logger()
	defer recovered(log, "channel") // after the recover, the channel closes
	// The channel's further requests are refused until it closes, by a
	// goroutine of the connection's (its requests end with the channel).
	discard := func() { c.wg.Go(func() { ssh.DiscardRequests(reqs) }) }
	for req := range reqs {
		c.sess.Touch()
		switch req.Type {
		case "subsystem":
			var msg struct{ Name string } // RFC 4254 6.5
			if err := ssh.Unmarshal(req.Payload, &msg); err != nil || msg.Name != "sftp" {
				log.Info("subsystem refused", "name", msg.Name, "err", err)
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			discard()
			exit(ch, c.serveSFTP(ch, login))
			return
		case "exec":
			var msg struct{ Command string } // RFC 4254 6.5
			if err := ssh.Unmarshal(req.Payload, &msg); err != nil {
				log.Info("exec refused: malformed request", "err", err)
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			discard()
			exit(ch, c.exec(ch, login, msg.Command))
			return
		case "shell":
			_ = req.Reply(true, nil)
			discard()
			fmt.Fprintln(ch.Stderr(), "upgate: interactive shells are not available here; use SFTP")
			log.Info("shell refused")
			exit(ch, 1)
			return
		default: // pty-req, env, x11-req, auth-agent-req@openssh.com, ...
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
	}
}

// serveSFTP runs pkg/sftp's request server on the channel until the client
// ends it or the connection dies; files still open then are aborted. It
// returns the subsystem's exit status, as sshd reports sftp-server's: 0
// when the client ended the session (EOF), 255 when a request it could
// not read did (sftp-server's fatal exit). The channel stays open for
// session to send it.
func (c *conn) serveSFTP(ch ssh.Channel, login *gateway.Login) int {
	h := newHandler(c.ctx, login.Fs, c.sess)
	rs := sftp.NewRequestServer(activity{ch, c.sess}, h.handlers(), sftp.WithStartDirectory("/"),
		sftp.WithRSMaxOpenHandles(cmp.Or(c.s.cfg.MaxHandles, DefaultMaxHandles)))
	c.sess.SetOp("idle")
	if err := rs.Serve(); err != nil && !errors.Is(err, io.EOF) {
		c.sess.Logger().Info("sftp session ended", "err", err)
		return 255
	}
	return 0
}

// activity marks every SFTP request the client sends as activity.
type activity struct {
	ssh.Channel
	sess *gateway.Session
}

func (a activity) Read(p []byte) (int, error) {
	n, err := a.Channel.Read(p)
	if n > 0 {
		a.sess.Touch()
	}
	return n, err
}

// exec answers the commands IDE connection tests and checksum tools run:
// pwd, and md5sum/sha1sum/sha256sum computed by the agent. It returns the
// exit status.
func (c *conn) exec(ch ssh.Channel, login *gateway.Login, command string) int {
	log := c.sess.Logger()
	words, err := splitWords(command)
	if err != nil || len(words) == 0 {
		fmt.Fprintf(ch.Stderr(), "upgate: cannot parse command %q\n", command)
		return 2
	}
	c.sess.SetOp("exec " + words[0].text)
	defer c.sess.SetOp("idle")
	log.Info("exec", "command", truncate(command, 200))
	var algo backend.HashAlgorithm
	switch words[0].text {
	case "pwd":
		fmt.Fprintln(ch, "/")
		return 0
	case "scp":
		return c.scp(activity{ch, c.sess}, ch.Stderr(), login, words[1:])
	case "md5sum":
		algo = backend.MD5
	case "sha1sum":
		algo = backend.SHA1
	case "sha256sum":
		algo = backend.SHA256
	default:
		fmt.Fprintf(ch.Stderr(), "upgate: command not allowed: %s (only SFTP, scp, pwd, md5sum, sha1sum and sha256sum are served)\n", words[0].text)
		return 127
	}
	// Operands, a shell's patterns expanded; none or "-" is standard
	// input, as md5sum reads it (rclone probes a hash command with empty
	// input).
	limit := c.s.cfg.ExecMaxFiles
	g := &globber{ctx: c.ctx, fs: login.Fs}
	var names []string
	for _, w := range words[1:] {
		if w.text == "-" || !strings.HasPrefix(w.text, "-") { // others are options such as -b or --
			matched, err := g.expand(w)
			if err != nil {
				log.Warn("exec refused: its patterns match too much", "command", words[0].text, "max", limit, "err", err)
				fmt.Fprintf(ch.Stderr(), "upgate: %s: at most %d files per command (sftp.exec_max_files): %v\n", words[0].text, limit, err)
				return 2
			}
			names = append(names, matched...)
		}
	}
	if len(names) == 0 {
		names = []string{"-"}
	}
	if len(names) > limit {
		// Each name is an agent call: refuse the whole command at once.
		log.Warn("exec refused: too many files", "command", words[0].text, "files", len(names), "max", limit)
		fmt.Fprintf(ch.Stderr(), "upgate: %s: at most %d files per command (sftp.exec_max_files), got %d\n", words[0].text, limit, len(names))
		return 2
	}
	status := 0
	for _, name := range names {
		var sum []byte
		var err error
		switch {
		case name == "-":
			sum, err = hashReader(ch, algo)
		default:
			sum, err = backend.Hash(c.ctx, login.Fs, path.Clean("/"+name), algo, 0, 0)
		}
		if err != nil {
			reason := err.Error()
			if errors.Is(err, os.ErrNotExist) {
				reason = "No such file or directory"
			}
			fmt.Fprintf(ch.Stderr(), "%s: %s: %s\n", words[0].text, name, reason)
			status = 1
			continue
		}
		fmt.Fprintf(ch, "%s  %s\n", hex.EncodeToString(sum), name)
	}
	return status
}

// hashReader hashes what r holds until EOF.
func hashReader(r io.Reader, algo backend.HashAlgorithm) ([]byte, error) {
	h, ok := algo.New()
	if !ok {
		return nil, fmt.Errorf("unsupported hash algorithm %q", algo)
	}
	if _, err := io.Copy(h, r); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// exit sends exit-status, which clients wait for before the channel's
// close.
func exit(ch ssh.Channel, code int) {
	_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, uint32(code)))
}

// truncate shortens s to at most n bytes for a log line.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
