package ftp

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	ftpserver "github.com/fclairamb/ftpserverlib"
)

// Site answers SITE UTIME (which ftpserverlib does not know), CHMOD and
// CHOWN (which it gets wrong), and leaves the others (SYMLINK, MKDIR,
// RMDIR) to it by returning nil.
func (d *clientDriver) Site(param string) (answer *ftpserver.AnswerCommand) {
	// recover works only in the deferred call itself, so recovered is
	// deferred directly and runs first; then its error becomes the answer.
	var panicErr error
	defer func() {
		if panicErr != nil {
			answer = &ftpserver.AnswerCommand{Code: ftpserver.StatusActionNotTaken, Message: panicErr.Error()}
		}
	}()
	defer recovered(d.c, "site", &panicErr)
	cmd, args, _ := strings.Cut(param, " ")
	switch strings.ToUpper(cmd) {
	case "CHMOD":
		return d.siteChmod(strings.TrimSpace(args))
	case "CHOWN":
		// SFTP ignores owners; FTP says so: files belong to the user the
		// agent runs as, and an owner change could hand an upload to
		// root (the agent refuses every chown anyway).
		return &ftpserver.AnswerCommand{Code: ftpserver.StatusActionNotTaken,
			Message: "SITE CHOWN: files belong to the container's user; upgate does not change owners"}
	case "UTIME":
	default:
		return nil
	}
	name, mtime, err := parseUTIME(strings.TrimSpace(args))
	if err != nil {
		return &ftpserver.AnswerCommand{Code: ftpserver.StatusSyntaxErrorParameters, Message: err.Error()}
	}
	spelled := name
	name = d.c.absPath(name)
	err = ftpserver.CheckDirSlash(d, spelled, name)
	if err == nil {
		err = d.Chtimes(name, mtime, mtime)
	}
	if err != nil {
		return &ftpserver.AnswerCommand{Code: replyCode(err, ftpserver.StatusActionNotTaken), Message: fmt.Sprintf("Couldn't set mtime of %s: %v", name, err)}
	}
	return &ftpserver.AnswerCommand{Code: ftpserver.StatusOK, Message: "UTIME OK"}
}

// siteChmod answers SITE CHMOD MODE PATH as vsftpd does: MODE is POSIX
// octal (at most 07777) and only its permission bits are set; setuid,
// setgid and the sticky bit are dropped, and the reply says so (an upload
// must never become a program that runs as someone else). ftpserverlib's
// own handler read MODE as Go's FileMode bits (40000755 was setuid) and
// panicked without a path.
func (d *clientDriver) siteChmod(args string) *ftpserver.AnswerCommand {
	mode, name, ok := strings.Cut(args, " ")
	name = strings.TrimSpace(name)
	if !ok || mode == "" || name == "" {
		return &ftpserver.AnswerCommand{Code: ftpserver.StatusSyntaxErrorParameters, Message: "SITE CHMOD: want \"MODE PATH\""}
	}
	bits, err := strconv.ParseUint(mode, 8, 32)
	if err != nil || bits > 0o7777 {
		return &ftpserver.AnswerCommand{Code: ftpserver.StatusSyntaxErrorParameters,
			Message: fmt.Sprintf("SITE CHMOD: mode %q is not octal 0-7777", mode)}
	}
	perm := os.FileMode(bits & 0o777)
	msg := "SITE CHMOD command successful"
	if bits&0o7000 != 0 {
		d.log.Info("setuid, setgid and sticky bits dropped", "path", name, "mode", mode)
		msg += " (setuid, setgid and sticky bits are not set over FTP)"
	}
	p := d.c.absPath(name)
	err = ftpserver.CheckDirSlash(d, name, p)
	if err == nil {
		err = d.Chmod(p, perm)
	}
	if err != nil {
		return &ftpserver.AnswerCommand{Code: replyCode(err, ftpserver.StatusActionNotTaken), Message: fmt.Sprintf("Couldn't chmod %s: %v", p, err)}
	}
	return &ftpserver.AnswerCommand{Code: ftpserver.StatusOK, Message: msg}
}

// parseUTIME reads the two forms lftp sends: "TIME PATH" and
// "PATH ATIME MTIME CTIME UTC". Times are YYYYMMDDhhmmss in UTC, with an
// optional fraction. PATH may contain spaces.
func parseUTIME(args string) (name string, mtime time.Time, err error) {
	fields := strings.Fields(args)
	if len(fields) >= 5 && strings.EqualFold(fields[len(fields)-1], "UTC") {
		m, err := parseFTPTime(fields[len(fields)-3])
		if err == nil {
			// The path is everything before the three times. Fields
			// splits at any white space, tabs included, so the last four
			// fields are cut at the same: five fields hold four gaps.
			rest := strings.TrimSpace(args)
			for range 4 {
				rest = strings.TrimSpace(rest[:strings.LastIndexFunc(rest, unicode.IsSpace)])
			}
			return rest, m, nil
		}
	}
	t, rest, ok := strings.Cut(args, " ")
	if ok && strings.TrimSpace(rest) != "" {
		if m, err := parseFTPTime(t); err == nil {
			return strings.TrimSpace(rest), m, nil
		}
	}
	return "", time.Time{}, fmt.Errorf("SITE UTIME: want \"YYYYMMDDhhmmss path\" or \"path atime mtime ctime UTC\", got %q", args)
}

// parseFTPTime reads YYYYMMDDhhmmss[.fraction] in UTC. It refuses times
// the agent protocol cannot carry (Unix nanoseconds in an int64: years 1678
// to 2262), which would otherwise wrap around to another date.
func parseFTPTime(s string) (time.Time, error) {
	for _, layout := range []string{"20060102150405", "20060102150405.999999999"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			if !time.Unix(0, t.UnixNano()).Equal(t) {
				return time.Time{}, fmt.Errorf("time %q out of range", s)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("bad time %q", s)
}
