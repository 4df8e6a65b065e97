package ftpserver

// Commands and answers that vsftpd gives and clients meet (upgate fork):
// HELP, STRU F, MDTM with a time (vsftpd's mdtm_write), CWD to the
// physical directory through links, listings of a link as a link, and
// NLST names spelled as the client spelled the directory.

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/afero"
)

// ClientDriverExtensionRealPath is a driver that resolves a path through
// the symbolic links on disk, as realpath(3): CWD then sets the working
// directory to where it leads, as vsftpd's chdir and getcwd do, so that
// PWD and a later CDUP agree with the filesystem (upgate fork).
type ClientDriverExtensionRealPath interface {
	RealPath(name string) (string, error)
}

// ClientDriverExtensionStatSearch is a driver whose Stat of a CWD's
// directory can also refuse one its user may not search (an error
// wrapping os.ErrPermission), as vsftpd's chdir(2) refuses it with 550
// (upgate fork).
type ClientDriverExtensionStatSearch interface {
	StatSearch(name string) (os.FileInfo, error)
}

// statCwd is the Stat of the directory CWD enters: the driver's
// StatSearch when it has one.
func (c *clientHandler) statCwd(name string) (os.FileInfo, error) {
	if s, ok := c.driver.(ClientDriverExtensionStatSearch); ok {
		return s.StatSearch(name)
	}

	return c.driver.Stat(name)
}

// helpCommands are the commands HELP lists: every one implemented.
var helpCommands []string //nolint:gochecknoglobals // filled once from commandsMap

func init() { //nolint:gochecknoinits // commandsMap refers to handleHELP: no cycle this way
	notImplemented := fmt.Sprintf("%p", (*clientHandler).handleNotImplemented)
	for name, desc := range commandsMap {
		if fmt.Sprintf("%p", desc.Fn) != notImplemented {
			helpCommands = append(helpCommands, name)
		}
	}

	sort.Strings(helpCommands)
}

// handleHELP lists the commands, as vsftpd does.
func (c *clientHandler) handleHELP(string) error {
	c.writeLine(fmt.Sprintf("%d-The following commands are recognized.", StatusHelpMessage))

	for i := 0; i < len(helpCommands); i += 14 {
		c.writeLine(" " + strings.Join(helpCommands[i:min(i+14, len(helpCommands))], " "))
	}

	c.writeMessage(StatusHelpMessage, "Help OK.")

	return nil
}

// handleSTRU accepts the file structure, the only one there is.
func (c *clientHandler) handleSTRU(param string) error {
	if strings.EqualFold(strings.TrimSpace(param), "F") {
		c.writeMessage(StatusOK, "Structure set to F.")
	} else {
		c.writeMessage(StatusNotImplementedParam, "Bad STRU command.")
	}

	return nil
}

// mdtmWrite is "MDTM YYYYMMDDhhmmss[.fff] path".
var mdtmWrite = regexp.MustCompile(`^(\d{14}(?:\.\d{1,9})?) +(\S.*)$`)

// handleMDTMSet answers MDTM with a time and a path by setting the path's
// modification time, as vsftpd's mdtm_write does (lftp's
// ftp:use-mdtm-overloaded); it reports whether param was that form. A
// path that exists as the whole parameter is a plain MDTM.
func (c *clientHandler) handleMDTMSet(param string) bool {
	m := mdtmWrite.FindStringSubmatch(param)
	if m == nil {
		return false
	}

	if _, err := c.driver.Stat(c.absPath(param)); err == nil {
		return false
	}

	mtime, err := time.ParseInLocation("20060102150405.999999999", m[1], time.UTC)
	if err != nil {
		return false
	}

	p := c.absPath(m[2])

	err = c.checkDirSlash(m[2], p) // a trailing slash (patch 21)
	if err == nil {
		err = c.driver.Chtimes(p, mtime, mtime)
	}

	if err != nil {
		c.writeMessage(c.errorCode(err, StatusActionNotTaken), fmt.Sprintf("Could not set file modification time of %s: %v", p, err))
	} else {
		c.writeMessage(StatusFileStatus, "File modification time set.")
	}

	return true
}

// listArgStat is statArg for a listing's argument (LIST, NLST, STAT):
// info is what the path is, a link followed; entry is what a listing of
// that single path shows: the path itself, not followed, when it is a
// link, dangling or not (vsftpd lists "l... name -> target"; patch 32).
// One Lstat answers both for anything but a link; a trailing slash asks
// Stat alone (patch 21).
func (c *clientHandler) listArgStat(arg, p string) (info, entry os.FileInfo, err error) {
	if l, ok := c.driver.(afero.Lstater); ok && !HasDirSlash(arg) {
		li, _, err := l.LstatIfPossible(p)
		if err != nil {
			return nil, nil, err
		}
		if li.Mode()&os.ModeSymlink == 0 {
			return li, li, nil
		}
		entry = li
	}
	info, err = c.statArg(arg, p)
	switch {
	case entry == nil:
		return info, info, err
	case err != nil:
		// A link whose target cannot be reached (missing, a loop of
		// links, a file on the way, a directory its user may not search)
		// lists as itself, as vsftpd lists what its lstat found.
		return entry, entry, nil
	}
	return info, entry, nil
}

// nlstName is how NLST names an entry: below the directory as the client
// spelled it ("/fix" gives "/fix/a", "fix" gives "fix/a", "/x/../fix"
// gives "/x/../fix/a", none or "." gives "a"), as vsftpd does.
func nlstName(spelled, name string) string {
	switch {
	case spelled == "" || spelled == ".":
		return name
	case strings.HasSuffix(spelled, "/"):
		return spelled + name
	default:
		return spelled + "/" + name
	}
}

// renamedInfo is a FileInfo under another name.
type renamedInfo struct {
	os.FileInfo
	name string
}

func (r renamedInfo) Name() string { return r.name }

// parseALLO reads ALLO's argument, RFC 959's "<decimal-integer> [<SP> R
// <SP> <decimal-integer>]", and returns the size; ok is false for
// anything else (none, a sign, a non-digit, an overflow). ParseUint takes
// digits alone.
func parseALLO(param string) (size int, ok bool) {
	f := strings.Fields(param)
	if len(f) == 3 && strings.EqualFold(f[1], "R") {
		if _, err := strconv.ParseUint(f[2], 10, 63); err != nil {
			return 0, false
		}
	} else if len(f) != 1 {
		return 0, false
	}

	n, err := strconv.ParseUint(f[0], 10, strconv.IntSize-1)

	return int(n), err == nil
}

// restOffset is REST's offset as vsftpd's str_a_to_filesize_t reads it:
// an argument that is not all digits (none, "abc", "-5") is 0, and so is
// one too large for an int64. vsftpd's next STOR then truncates and
// writes from the start, as a STOR without REST does; RETR sends the
// whole file.
func restOffset(param string) int64 {
	n, err := strconv.ParseUint(param, 10, 63) // digits alone, no sign
	if err != nil {
		return 0
	}

	return int64(n)
}
