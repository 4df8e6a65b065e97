package sftp_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// scpFuzzCommands are the scp command lines FuzzSCP runs, picked by an
// input's first byte: sinks and sources, through alice's links that lead
// out of her directory (escapetest) too.
func scpFuzzCommands() []string {
	return []string{
		"scp -t /", "scp -r -p -t /", "scp -r -t esc", "scp -r -t tobob", "scp -d -t seed", "scp -p -t seed",
		"scp -p -f seed", "scp -r -p -f .", "scp -r -f esc", "scp -f 'se*' '/../..' [!a]* *//",
	}
}

// FuzzSCP sends fuzzed bytes as the client's side of an scp copy (the
// records and data of a sink, the answers to a source) to a real
// gateway, and asserts what the client and the container may rely on
// whatever the bytes: the command ends within a bound with an exit
// status of 0 or 1 (no handler panicked), a sink's answers are well
// formed (a 0 byte, or a 1 byte and one line), nothing appears outside
// alice's directory, and no upload's temp file stays.
func FuzzSCP(f *testing.F) {
	for _, seed := range []struct {
		cmd  byte
		body string
	}{
		{0, "C0644 5 new\nhello\x00"},
		{0, "C0644 100 cut\nshort"},
		{1, "T1 0 2 0\nD0755 0 d\nT3 0 4 0\nC0600 2 f\nhi\x00E\nC0644 1 g\ng\x01scp: failed\n"},
		{1, "D0755 0 ..\n"},
		{2, "C0644 3 out\nout\x00D0700 0 d\nC0644 1 x\nx\x00E\n"},
		{3, "D0755 0 d\nC0644 1 x\nx\x00E\n"},
		{4, "C0644 1 x\nx\x00"},
		{5, "T99999999999999999999 0 0 0\nC7777 2 seed\nab\x00"},
		{6, "\x00\x00\x00\x00"},
		{7, "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"},
		{8, "\x00\x01scp: no\n\x00"},
		{9, "\x00\x00\x00\x00\x00\x00"},
	} {
		f.Add(append([]byte{seed.cmd}, seed.body...))
	}
	z := newFuzzSFTP(f)
	commands := scpFuzzCommands()
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		z.Reset(t)
		defer z.Reset(t)
		command := commands[int(in[0])%len(commands)]
		s, err := z.client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var out bytes.Buffer
		s.Stdin, s.Stdout, s.Stderr = bytes.NewReader(in[1:]), &out, io.Discard
		done := make(chan error, 1)
		go func() { done <- s.Run(command) }()
		select {
		case err = <-done:
		case <-time.After(fuzzDeadline):
			t.Fatalf("%s: did not end within %v", command, fuzzDeadline)
		}
		var ee *ssh.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee) && ee.ExitStatus() == 1:
		default:
			t.Fatalf("%s: %v", command, err) // a missing exit status: the handler panicked
		}
		if strings.Contains(command, "-t ") {
			if err := checkSinkAnswers(out.Bytes()); err != nil {
				t.Fatalf("%s: answers %q: %v", command, out.Bytes(), err)
			}
		}
		z.check(t)
	})
}

// checkSinkAnswers checks the form of an SCP sink's answers.
func checkSinkAnswers(b []byte) error {
	r := bufio.NewReader(bytes.NewReader(b))
	for i := 0; ; i++ {
		c, err := r.ReadByte()
		if err != nil {
			return nil
		}
		switch c {
		case 0:
		case 1:
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("answer %d: an error without its newline", i)
			}
			if strings.Contains(line, "panic") {
				return fmt.Errorf("answer %d: %q", i, line)
			}
		default:
			return fmt.Errorf("answer %d: byte %#x", i, c)
		}
	}
}
