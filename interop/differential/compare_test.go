package differential_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/upgate/upgate/internal/agenttest"
	"github.com/upgate/upgate/internal/refserver"
)

func TestMain(m *testing.M) {
	// The agent process creates files with the umask it inherits from
	// this one; the reference servers run with 022 (sftp-server -u 022,
	// vsftpd's local_umask=022). See refserver.Umask. WithUpgate builds
	// the binary the agent process runs.
	refserver.SetUmask()
	goleak.VerifyTestMain(agenttest.WithUpgate(m, &upgateBinary))
}

// deliberate is one difference between upgate and a reference server
// that upgate makes on purpose. It is the only list of them: any other
// difference fails the tests.
type deliberate struct {
	proto string // "sftp", "ftp", "webdav", "scp" or "putty"
	// step names the step whose answer differs; for a rule about a field
	// that no step compares, it is empty and what says which field.
	step string
	what string
	// upgate is upgate's answer to step, exactly: a step listed here
	// whose upgate answer is anything else still fails.
	upgate string
	why    string
}

// Reasons, shared by several rows.
const (
	whyAtomic = "atomic uploads (DESIGN.md): while an upload is open, every OTHER session " +
		"sees the old file (or none), never a half-written one; only the uploading session sees its work"
	whyAborted = "atomic uploads (DESIGN.md): an upload whose data connection broke (426) is not committed; " +
		"vsftpd keeps the part that arrived, which a client would take for the file"
	whyCtl = "names with ASCII control characters or DEL are refused on purpose: they forge FTP " +
		"replies and log lines (DESIGN.md, Names); rclone maps them with encoding Ctl,Del"
	whyOwner = "upgate does not chown: files belong to the agent's user, so uid/gid and owner " +
		"names are the agent's, not the login's"
	whyIdentity = "server identity strings and human-readable message texts are the server's own; " +
		"clients act on codes"
	whyMissingList = "LIST of a missing path is an error, not vsftpd's empty listing: a client mirroring with " +
		"--delete must not take a missing or unreadable directory for an empty one (lftp#232)"
	whyNotDirList = "LIST of a file named with a trailing slash (file/) is ENOTDIR, not vsftpd's empty listing, " +
		"for the reason LIST of a missing path is an error (whyMissingList)"
	whyGlobDir = "a pattern is matched in an existing directory: one that matches nothing there is vsftpd's empty " +
		"listing (a script's mget *.zip finds nothing), but a missing directory, a file taken for one or a pattern " +
		"outside the last component is an error, for the reason LIST of a missing path is one (whyMissingList)"
	whyUnreadableList = "a directory whose entries cannot be read or examined (mode 0000, 0300 or 0600) lists as an error " +
		"(PERMISSION_DENIED, 450), not as sftp-server's empty listing or vsftpd's line for the directory itself, " +
		"and so does a name in it (vsftpd lists what its readdir matches), " +
		"for the reason LIST of a missing path is an error (whyMissingList)"
	whyDotfiles = "LIST always lists dotfiles and never . or ..: IDE clients read hidden files from a plain " +
		"LIST (VS Code's lstat, PhpStorm's hidden files) and reject cdir/pdir entries; STAT of a " +
		"directory is RFC 959's 212"
	whySetuid = "setuid bits are never set, nor setgid on anything but a directory, by either protocol (issue 14): " +
		"an upload must not become a program that runs as someone else; SFTP drops them, the agent refuses them " +
		"(a directory's setgid bit, which only passes its group on, is kept as sftp-server keeps it)"
	whyAbsLink = "an absolute link target names the user's tree, whose / is not the container's /: it is " +
		"stored relative to the link, so that it resolves the same inside the container"
	whyLinkShape = "every link made through the agent keeps a shape that stays inside the user's root whatever " +
		"changes around it later (backend/agent/links.go): its .. all first, no more of them than the directories " +
		"above it; a target with .. after a name, and a move that would take a link to where it climbs out, are refused"
	whyRename = "SFTP RENAME replaces a file by a file atomically, as posix-rename does (OpenSSH's refuses): " +
		"WinSCP and PhpStorm rename uploads over their target, and remove-then-rename leaves a window " +
		"with no file (vscode-sftp#535); directories are never replaced, as OpenSSH"
	whyHardLink = "a truncating upload is atomic: it replaces the file by a rename, so other hard links keep " +
		"the old content, as with any atomic writer (rsync, editors' backupcopy=no)"
	whyLinkUpload = "an upload in progress has no name on disk yet to link to: hardlink@openssh.com of one is refused " +
		"as busy (EBUSY), and git, which links its object files into place, falls back to a rename (backend/view_fs.go, View.Link)"
	whyCopyDataOK = "copy-data whose read or write fails answers the failure; sftp-server answers OK when the piece " +
		"that failed was the last asked for (it tests the length left, not the failure, after its loop), and a client " +
		"told OK for a copy that wrote nothing would lose it"
	whyBadMessage = "a request that cannot be read ends the session on both, once the requests before it are answered " +
		"(its uploads are aborted on upgate); upgate first answers it BAD_MESSAGE where its id can be read, so that the " +
		"client learns why, where sftp-server exits without a word (fatal \"bad message\")"
	whyCopyDataNames = "copy-data between two handles of one path answers FAILURE, as between one handle, whatever " +
		"spellings the path was opened by (/f and /./f): the request server cleans every path before upgate sees it; " +
		"sftp-server compares the names as sent, and copies between two spellings of one file, ranges overlapping or not"
	whyChown = "SETSTAT's uid and gid are ignored, not refused: the agent writes as the container's user and never " +
		"chowns (frontends/sftp setstat; README, deliberate differences: SFTP ignores uid/gid)"
	whyDotDot = "FTP paths are the gateway's: .. is taken away with the name before it, as text, before the agent " +
		"is asked (README, Files), where vsftpd's kernel answers ENOTDIR or ENOENT; nothing is reached that the " +
		"path without it would not reach"
	whyASCIIRest = "TYPE A changes nothing in what upgate sends (as vsftpd's without ascii_download_enable), so a byte " +
		"offset is exact and REST resumes a download in ASCII mode; vsftpd refuses REST with RETR in ASCII mode " +
		"(550) whatever it converts"
	whyRnfrNow = "RNFR's name is resolved when RNFR is answered, against the working directory then (RFC 959's " +
		"\"old pathname\"; ProFTPD and Pure-FTPd do the same), where vsftpd keeps its text and resolves it at the RNTO, " +
		"after a CWD or CDUP sent between the two; no client sends one there (TestFTPRandom seeds 731, 1184)"
	whyCwdRemoved = "the FTP working directory is a path, the gateway's (README, Files): one removed under the " +
		"session is still what PWD shows, a directory made again there is the working directory, and a name in it is " +
		"looked up from the user's root, through the directories above it (one whose search bit was taken away " +
		"refuses it); vsftpd's is its process's, the directory itself: once removed, PWD answers \"\" and a name " +
		"relative to it cannot be made until a CWD, and a search bit taken away above it changes nothing"
	whyDirTime = "MDTM with a time (and MFMT) sets a directory's time, where vsftpd refuses it (550), as SFTP's " +
		"SETSTAT and sftp-server set it: a client that keeps a tree's times keeps its directories' too; MDTM and " +
		"SIZE without a time still refuse a directory, as vsftpd's"
	whyMoveUpUnread = "a directory moved up (to fewer directories above it) is read through for the links it holds, " +
		"which must keep their shape at the new depth (whyLinkShape), so one its user may not read, or may read but not " +
		"search where it holds a link or a directory, is not moved up (PERMISSION_DENIED, 550), where rename(2) moves it " +
		"without looking inside (README, A directory moved up)"
	whyDAVFileParent = "a PUT, MKCOL, COPY or MOVE that would make something below a file (or a COPY or MOVE onto a " +
		"file's URL ending in /, which names a collection) answers 409 Conflict, as below a missing collection " +
		"(RFC 4918 9.3.1, 9.7.1, 9.8.5, 9.9.4: the parent collection must exist first), where Apache's mod_dav_fs " +
		"answers 400"
	whyDAVDstHoldsSource = "a MOVE or COPY onto a collection that holds its source is refused (403), as mod_dav " +
		"refuses it for a collection's: replacing the destination would delete the source. Apache's mod_dav checks " +
		"only a collection's, and for a file's deletes the destination, the source with it, then answers 500"
	whyDAVMoveNoParent = "a MOVE, or a collection's COPY, whose destination's parent collection is missing answers " +
		"409 Conflict, as RFC 4918 9.8.5 and 9.9.4 name it (and as both servers answer a file's COPY); Apache's " +
		"mod_dav_fs answers the MOVE 500 and the COPY 403 (and a MOVE that brought its source's lock token has ended " +
		"that lock by then)"
	whyDAVNotACollection = "a path below a file, or a file's URL ending in / (which names a collection, RFC 4918 5.2), " +
		"names nothing: 404 Not Found, as for any missing path, as the kernel's ENOTDIR means, and as Apache answers " +
		"a GET of it; Apache's mod_dav_fs answers its other methods 400 Bad Request, which a client takes for a " +
		"malformed request (a MKCOL of such a URL answers 405, as of anything that exists)"
	whyDAVCheckOrder = "a request wrong in two ways is refused by both servers, each for another of them, and " +
		"nothing changes: x/net/webdav checks the If header and the locks before the method's own checks (a " +
		"missing resource, an existing collection, a path below a file), and upgate refuses a MOVE or COPY into " +
		"or onto its own collection before the locks, where mod_dav checks the method first and the locks before " +
		"the nesting; upgate ignores a failed precondition (If-Match, If-None-Match, If-Unmodified-Since) where the " +
		"request fails anyway (RFC 9110 13.2.1: a missing parent, a path below a file), where mod_dav answers 412 " +
		"before those checks of a new name, and evaluates it before the nesting refusals; an If list that does not " +
		"hold (a Not of the lock's own token) is 412 on upgate before the lock it meets, which Apache answers 207"
	whyDAVCondNew = "If-Unmodified-Since on a resource that does not exist is ignored (RFC 9110 13.1.4: it has no " +
		"modification date), and the PUT or MKCOL goes on; Apache's mod_dav answers 412, as if the new name had been " +
		"modified when the request came"
	whyDAVCondDestination = "a MOVE's or COPY's preconditions (If-Match, If-None-Match, If-Unmodified-Since) are " +
		"asked of its source, the Request-URI (RFC 9110 13.1: the target resource); Apache's mod_dav asks them of " +
		"the destination too, and answers 412 where, say, an If-Match: * meets a destination that does not exist yet"
	whyDAVLocked207 = "a change that a lock protects, made without its token, answers 423 Locked (RFC 4918 11.3, " +
		"x/net/webdav); Apache's mod_dav answers 424 Failed Dependency, or 207 Multi-Status holding the 423 of the " +
		"lock it met"
	whyDAVIfUntagged = "an untagged If header (RFC 4918 10.4) names the token of any resource the request changes, " +
		"as x/net/webdav reads it: a COPY onto a locked destination, a new member of a locked collection, go " +
		"through with that lock's token; Apache applies an untagged list to the Request-URI alone (a COPY's " +
		"source, a member not yet made) and answers 412 or 424"
	whyDAVUnlock = "an UNLOCK whose token is unknown, or locks another path, answers 409 Conflict (RFC 4918 " +
		"9.11.1: lock-token-matches-request-uri); Apache's mod_dav answers 400"
	whyDAVPutCollection = "a PUT of a collection, or of a URL ending in / (which names one, RFC 4918 5.2), answers " +
		"405 Method Not Allowed, as RFC 4918 9.7.2 allows; Apache's mod_dav_fs answers 409 for a collection, 400 for " +
		"a file's URL with a /, and makes a file of a new name's"
	whyDAVLockNull = "a LOCK of an unmapped URL makes an empty file and answers 201 Created, as RFC 4918 7.3 and " +
		"9.10.4 have it (they replaced RFC 2518's lock-null resources); Apache's mod_dav_fs keeps a lock-null " +
		"resource, answered 200 and gone at the UNLOCK. Finder and Explorer lock a new name before its PUT either way"
	whyDAVUnlistable = "a Depth 1 PROPFIND of a collection whose entries cannot be examined (mode 0444 for its user) " +
		"answers 403 and says why, as FTP's LIST and SFTP's READDIR of it fail (whyUnreadableList); Apache's " +
		"mod_dav_fs (AllowOverride None, as internal/refserver configures it) closes the connection without an " +
		"answer, and x/net/webdav alone would answer 207 with the collection and no members, an empty collection " +
		"to a sync client"
	whyDAVGetCollection = "GET of a collection answers 405 Method Not Allowed and says why (a collection has no " +
		"content to download: list it with PROPFIND), where Apache without a directory index answers 404, which a " +
		"client may take for a missing collection"
	whyDAVDeadProps = "dead properties are not stored (README, WebDAV): a file in the container has nowhere to keep " +
		"them, and a property that seemed kept but is lost at the next save would mislead; PROPPATCH answers each one " +
		"403 in its propstat (RFC 4918 9.2), and sets the times it understands (X-OC-Mtime, lastmodified)"
	whyPostedOpen = "an FTP upload into the directory of the session's last upload does not wait for the agent's " +
		"open, a round trip less per file (issue 15): an error of that file's own (its name is a directory) then " +
		"comes after the 150, still as the STOR's failure; a missing directory or a name too long fails before it"
)

// deliberateDiffs is the table of upgate's deliberate differences. The
// rows with a step are checked answer by answer; the rows without one
// describe fields the comparison leaves out.
var deliberateDiffs = []deliberate{
	// Fields never compared.
	{proto: "sftp", what: "uid, gid (ATTRS) and the owner/group columns of READDIR's longname", why: whyOwner},
	{proto: "sftp", what: "SSH server version string, STATUS message texts", why: whyIdentity},
	{proto: "ftp", what: "owner/group columns of LIST and STAT lines", why: whyOwner},
	{proto: "ftp", what: "220 banner, SYST text, every reply's text after the code (except where the text is data: PWD/MKD path, SIZE, MDTM)", why: whyIdentity},
	{proto: "sftp", what: "on-disk entries whose names hold control characters or DEL (they exist only on OpenSSH)", why: whyCtl},
	{proto: "ftp", what: "on-disk entries whose names hold control characters or DEL (they exist only on vsftpd)", why: whyCtl},

	// SFTP: another session during an upload.
	{proto: "sftp", step: "B: lstat /up while A uploads it", upgate: "NO_SUCH_FILE", why: whyAtomic},
	{proto: "sftp", step: "B: readdir / while A uploads /up", upgate: "up not listed", why: whyAtomic},
	{proto: "sftp", step: "B: read /d/f1 while A rewrites it", upgate: `CONTENT 16 bytes "heXYo world\ntail"`, why: whyAtomic},
	{proto: "sftp", step: "B: stat /d/f1 while A rewrites it", upgate: "ATTRS size=16 mode=0100640 atime=now mtime=now", why: whyAtomic},

	// SFTP: names refused for safety.
	{proto: "sftp", step: "readdir /names: control characters", upgate: "[]", why: whyCtl},

	// FTP: another session during an upload.
	{proto: "ftp", step: "B: SIZE /up.bin while A uploads it", upgate: "550", why: whyAtomic},
	{proto: "ftp", step: "STOR /reset.bin, data connection reset", upgate: "1xx/426 B: SIZE 550", why: whyAborted},

	// FTP: names refused for safety.
	{proto: "ftp", step: "MKD name with \\x01", upgate: "550", why: whyCtl},
	{proto: "ftp", step: "STOR name with DEL", upgate: "5xx", why: whyCtl},
	{proto: "ftp", step: "NLST /names: control characters", upgate: "1xx/2xx []", why: whyCtl},

	// Answers upgate gives on purpose (each reason says why).
	{proto: "ftp", step: "STOR /d/dir2 (a directory) after an upload into /d", upgate: "2xx 1xx/2xx 1xx/5xx", why: whyPostedOpen},
	{proto: "ftp", step: "NLST /d/f1/.. (.. after a file)", upgate: `1xx/2xx "/d/f1/../dir2" "/d/f1/../ep" "/d/f1/../f1" "/d/f1/../f3" "/d/f1/../sub" "/d/f1/../sub2"`, why: whyDotDot},
	{proto: "ftp", step: "MKD /dt, MDTM with a time on it (a directory), RMD /dt", upgate: "257 213 250", why: whyDirTime},
	{proto: "ftp", step: rowRnfrNow, upgate: "2xx 350 2xx 250 350 250 213", why: whyRnfrNow},
	{proto: "ftp", step: rowCwdRemoved, upgate: `257 2xx 250 257 "/cwr" 257 1xx/2xx 2xx 213 "1" 250 250`, why: whyCwdRemoved},

	{proto: "ftp", step: "TYPE A, REST 2, RETR /d/f1 (a resumed download in ASCII mode), TYPE I", upgate: "200 350 1xx/2xx DATA 10 bytes \"llo world\\n\" 200", why: whyASCIIRest},
	{proto: "ftp", step: "LIST /missing", upgate: "4xx", why: whyMissingList},
	{proto: "ftp", step: "LIST /fix/file.txt/ (a file with a slash)", upgate: "4xx", why: whyNotDirList},
	{proto: "ftp", step: "NLST /nodir/*.txt (missing directory)", upgate: "4xx", why: whyGlobDir},
	{proto: "ftp", step: "LIST /g/one.txt/* (a file's directory)", upgate: "4xx", why: whyGlobDir},
	{proto: "ftp", step: "LIST /g/*.txt/ (a pattern with a slash)", upgate: "4xx", why: whyGlobDir},
	{proto: "ftp", step: "LIST /*/one.txt (a pattern not last)", upgate: "4xx", why: whyGlobDir},
	{proto: "ftp", step: "LIST -a /fix", upgate: "1xx/2xx [\"dang -> nowhere\" lrwxrwxrwx size=7 now; \"file.txt\" -rw-r--r-- size=13 2004-11-09; \"ln -> file.txt\" lrwxrwxrwx size=8 now; \"lnd -> sub\" lrwxrwxrwx size=3 now; \"sub\" drwxr-xr-x 2004-11-09]", why: whyDotfiles},
	{proto: "ftp", step: "STAT /fix (over the control connection)", upgate: "212 [\"dang -> nowhere\" lrwxrwxrwx size=7 now; \"file.txt\" -rw-r--r-- size=13 2004-11-09; \"ln -> file.txt\" lrwxrwxrwx size=8 now; \"lnd -> sub\" lrwxrwxrwx size=3 now; \"sub\" drwxr-xr-x 2004-11-09]", why: whyDotfiles},
	{proto: "ftp", step: "STAT -la /fix", upgate: "212 [\"dang -> nowhere\" lrwxrwxrwx size=7 now; \"file.txt\" -rw-r--r-- size=13 2004-11-09; \"ln -> file.txt\" lrwxrwxrwx size=8 now; \"lnd -> sub\" lrwxrwxrwx size=3 now; \"sub\" drwxr-xr-x 2004-11-09]", why: whyDotfiles},
	{proto: "ftp", step: "NLST /names", upgate: "1xx/2xx \"/names/-dash\" \"/names/.hidden\" \"/names/LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL\" \"/names/back\\\\slash\" \"/names/héllo wörld ☃.txt\" \"/names/quote\\\"'`$(x)\" \"/names/star*?[x]\" \"/names/still\\xffbad\" \"/names/with space.txt\"", why: whyDotfiles},
	{proto: "ftp", step: "LIST /names", upgate: "1xx/2xx [\"-dash\" -rw-r--r-- size=7 now; \".hidden\" -rw-r--r-- size=7 now; \"LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL\" -rw-r--r-- size=4 now; \"back\\\\slash\" -rw-r--r-- size=7 now; \"héllo wörld ☃.txt\" -rw-r--r-- size=7 now; \"quote\\\"'`$(x)\" -rw-r--r-- size=7 now; \"star*?[x]\" -rw-r--r-- size=7 now; \"still\\xffbad\" -rw-r--r-- size=7 now; \"with space.txt\" -rw-r--r-- size=7 now]", why: whyDotfiles},
	{proto: "ftp", step: "LIST /: link counts", upgate: "1xx/2xx [\"big.bin\" nlink=1; \"d\" nlink=5; \"fix\" nlink=3; \"loop\" nlink=3; \"names\" nlink=2; \"reset.bin\" nlink=1; \"up.bin\" nlink=1]", why: whyCtl},
	{proto: "sftp", step: "mkdir name with \\x01", upgate: "BAD_MESSAGE", why: whyCtl},
	{proto: "sftp", step: "create name with DEL", upgate: "open: BAD_MESSAGE", why: whyCtl},
	{proto: "sftp", step: "create name with newline", upgate: "open: BAD_MESSAGE", why: whyCtl},
	{proto: "sftp", step: "stat /d/f1 after mode 04755", upgate: "ATTRS size=10 mode=0100755 atime=now mtime=now", why: whySetuid},
	{proto: "sftp", step: "stat /d777 after 06777", upgate: "ATTRS mode=0042777 atime=now mtime=now", why: whySetuid},
	{proto: "sftp", step: "stat /d/f1 after mode 02755", upgate: "ATTRS size=10 mode=0100755 atime=2001-09-09T01:46:40Z mtime=2004-11-09T11:33:20Z", why: whySetuid},
	{proto: "sftp", step: "symlink /dd -> d/../d/f1 (a .. after a name)", upgate: "PERMISSION_DENIED NO_SUCH_FILE", why: whyLinkShape},
	{proto: "sftp", step: "symlink /lk/up -> .., renamed to /lkup (where it climbs out), removed", upgate: "OK OK PERMISSION_DENIED OK NO_SUCH_FILE OK", why: whyLinkShape},
	{proto: "sftp", step: "readlink /abs", upgate: "NAME \"d/f2\"", why: whyAbsLink},
	{proto: "sftp", step: "symlink /d/sub/absl -> /d/f1 (absolute, in a subdirectory)", upgate: "NAME \"../f1\"", why: whyAbsLink},
	{proto: "sftp", step: "pc: ReadLink /abs", upgate: "d/f2 OK", why: whyAbsLink},
	{proto: "sftp", step: "tree \"/abs\"", upgate: "link -> \"d/f2\"", why: whyAbsLink},
	{proto: "sftp", step: "tree \"/d/sub/absl\"", upgate: "link -> \"../f1\"", why: whyAbsLink},
	{proto: "sftp", step: "rename over existing file", upgate: "OK / CONTENT 2 bytes \"A1\"", why: whyRename},
	{proto: "sftp", step: "rename file to itself", upgate: "OK / CONTENT 2 bytes \"A5\"", why: whyRename},
	{proto: "sftp", step: "tree \"/rn/a1\"", upgate: "(absent)", why: whyRename},
	{proto: "sftp", step: "tree \"/rn/b1\"", upgate: "file 0644 size=2 mtime=now sha256=16a36e86f6fed5d4", why: whyRename},
	{proto: "sftp", step: "write through one hard link, read the other", upgate: "CONTENT 2 bytes \"HL\"", why: whyHardLink},
	{proto: "sftp", step: "tree \"/hl/b\"", upgate: "file 0644 size=2 mtime=now sha256=81ff510a481bee0b", why: whyHardLink},
	{proto: "sftp", step: "hardlink /hu -> /hu2 during its upload", upgate: "FAILURE", why: whyLinkUpload},
	{proto: "sftp", step: "raw: STAT ., then an OPEN cut short after its id, in one write, on a session of its own",
		upgate: "type 105 id 1; type 101 id 2 BAD_MESSAGE; the session ended", why: whyBadMessage},
	{proto: "sftp", step: "setstat /hu uid/gid 4242", upgate: "OK", why: whyChown},
	{proto: "sftp", step: "copy-data: /cps into a handle of /./cps (one file, two spellings)", upgate: "OK HANDLE HANDLE FAILURE OK OK CONTENT 6 bytes \"abcdef\" OK", why: whyCopyDataNames},
	{proto: "sftp", step: "copy-data from a handle open only for writing, 2 bytes (its read fails)", upgate: "OK HANDLE HANDLE NO_SUCH_FILE OK OK CONTENT 0 bytes \"\"", why: whyCopyDataOK},

	// WebDAV, against Apache's mod_dav_fs.
	{proto: "webdav", step: "PUT /f1/y (a file as the parent)", upgate: "409", why: whyDAVFileParent},
	{proto: "webdav", step: "MOVE /f1 to /nope/f1 (no parent)", upgate: "409", why: whyDAVMoveNoParent},
	{proto: "webdav", step: "COPY /d to /nope/d (a collection, no parent)", upgate: "409", why: whyDAVMoveNoParent},
	{proto: "webdav", step: "MKCOL /f1/x (a file as the parent)", upgate: "409", why: whyDAVFileParent},
	{proto: "webdav", step: "PROPFIND /f1/x (below a file), Depth 0", upgate: "404", why: whyDAVNotACollection},
	{proto: "webdav", step: "DELETE /f1/ (a file's URL with a /)", upgate: "404", why: whyDAVNotACollection},
	{proto: "webdav", step: "PUT /d (a collection)", upgate: "405", why: whyDAVPutCollection},
	{proto: "webdav", step: "PUT /n1/ (a new name with a /)", upgate: "405", why: whyDAVPutCollection},
	{proto: "webdav", step: "DELETE /lt while /lt/f is locked", upgate: "423", why: whyDAVLocked207},
	{proto: "webdav", step: "MOVE /lt while /lt/f is locked", upgate: "423", why: whyDAVLocked207},
	{proto: "webdav", step: "UNLOCK /f1 with /lt/f's token (another path)", upgate: "409", why: whyDAVUnlock},
	{proto: "webdav", step: "tree \"/n1\"", upgate: "(absent)", why: whyDAVPutCollection},
	{proto: "webdav", step: "MOVE /d3x/f onto /d3x, the collection that holds it", upgate: "201 201 403", why: whyDAVDstHoldsSource},
	{proto: "webdav", step: "tree \"/d3x\"", upgate: "dir 0755 mtime=now", why: whyDAVDstHoldsSource},
	{proto: "webdav", step: "tree \"/d3x/f\"", upgate: "file 0644 size=4 mtime=now sha256=79f076abdd19a752", why: whyDAVDstHoldsSource},
	{proto: "webdav", step: "GET /d (a collection)", upgate: "405", why: whyDAVGetCollection},
	{proto: "webdav", step: "PROPPATCH /f1 (a dead property)", upgate: "207 HTTP/1.1 403 Forbidden", why: whyDAVDeadProps},
	{proto: "webdav", step: "LOCK /lk (missing: made empty)", upgate: "201 token", why: whyDAVLockNull},
	{proto: "webdav", step: "GET /lk", upgate: "200 0 bytes sha256=e3b0c44298fc1c149afbf4c8996fb924", why: whyDAVLockNull},
	{proto: "webdav", step: "tree \"/lk\"", upgate: "file 0644 size=0 mtime=now sha256=e3b0c44298fc1c14", why: whyDAVLockNull},
	{proto: "webdav", step: "MKCOL /pl, PUT /pl/f, /pl made 0444 on disk, PROPFIND Depth 1 of it, its mode back", upgate: "201 201 403 200 5 bytes sha256=c3a9363169a305996642df8d05bc251e", why: whyDAVUnlistable},

	// Permissions (the agent process is not root, as no reference login is).
	{proto: "sftp", step: "perm: readdir /perm/closed (0600)", upgate: "PERMISSION_DENIED", why: whyUnreadableList},
	{proto: "sftp", step: "perm: posix-rename /perm/rsx/sx (0600, holding a file) up to /perm/rsxu, then /perm/rsl/sl (0600, holding a link) up to /perm/rslu",
		upgate: "OK OK OK OK OK PERMISSION_DENIED OK NO_SUCH_FILE OK OK CONTENT 1 bytes \"F\"", why: whyMoveUpUnread},
	{proto: "ftp", step: "perm: LIST /perm/closed (0000)", upgate: "4xx", why: whyUnreadableList},
	{proto: "ftp", step: "perm: NLST /perm/closed (0000)", upgate: "4xx", why: whyUnreadableList},
	{proto: "ftp", step: "perm: STOR /perm/rw, then STOR /perm/ro (0444) after it", upgate: "1xx/2xx 1xx/550", why: whyPostedOpen},
	{proto: "ftp", step: "perm2: STOR into root's 0755 directory, right after an upload into it", upgate: "1xx/550", why: whyPostedOpen},
	{proto: "ftp", step: "perm2: LIST /perm2/d300 (0300)", upgate: "4xx", why: whyUnreadableList},
	{proto: "ftp", step: "perm2: NLST /perm2/d300 (0300)", upgate: "4xx", why: whyUnreadableList},

	// PuTTY's pscp and psftp.
	{proto: "putty", what: "owner/group columns of psftp's ls and pscp -ls lines", why: whyOwner},
	{proto: "putty", step: "psftp: ren onto an existing file", upgate: "exit 0 \"Remote working directory is /\\n/rn/x -> /rn/y\\n\"", why: whyRename},
	{proto: "putty", step: "tree \"/rn/x\"", upgate: "(absent)", why: whyRename},
	{proto: "putty", step: "tree \"/rn/y\"", upgate: "file 0644 size=2 mtime=now sha256=73cb3858a687a849", why: whyRename},
	{proto: "putty", step: "psftp: chmod u+s,g+s", upgate: `exit 0 "Remote working directory is /\n/su/f: 0755 -> 6755\nListing directory /su\n` +
		`drwxr-xr-x    2 OWNER GROUP 4096 RECENT .\ndrwxr-xr-x   10 OWNER GROUP 4096 RECENT ..\n-rwxr-xr-x    1 OWNER GROUP 3 RECENT f\n"`, why: whySetuid},
	{proto: "putty", step: "tree \"/su/f\"", upgate: "file 0755 size=3 mtime=now sha256=d928f50882dafa9d", why: whySetuid},
}

// lookupDeliberate finds the table row for proto's step.
func lookupDeliberate(proto, step string) (deliberate, bool) {
	for _, d := range deliberateDiffs {
		if d.proto == proto && d.step != "" && d.step == step {
			return d, true
		}
	}
	return deliberate{}, false
}

// hasCtl reports whether a name holds an ASCII control character or DEL.
func hasCtl(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return true
		}
	}
	return false
}

// stepResult is one step's answer from one server, as a canonical string.
type stepResult struct {
	step   string
	answer string
}

// difference is a step (or a tree entry) on which two servers differ.
type difference struct {
	step          string // as reported: the step's number and name, or the tree entry
	name          string // as deliberateDiffs names it
	ref, upgate   string
	deliberateWhy string // non-empty: listed in deliberateDiffs
}

// compareRuns compares two runs of the same steps. With allowDeliberate
// (reference against upgate) a difference listed in deliberateDiffs
// whose upgate answer is the listed one is reported apart (and checkRows
// then checks the table against the run); without it (reference against
// itself) every difference counts.
func compareRuns(t *testing.T, proto string, ref, got []stepResult, allowDeliberate bool) (diffs []difference) {
	t.Helper()
	if len(ref) != len(got) {
		t.Fatalf("runs have %d and %d steps", len(ref), len(got))
	}
	for i := range ref {
		if ref[i].step != got[i].step {
			t.Fatalf("step %d is %q in one run and %q in the other", i, ref[i].step, got[i].step)
		}
		if ref[i].answer == got[i].answer {
			continue
		}
		d := difference{step: fmt.Sprintf("%03d %s", i, ref[i].step), name: ref[i].step, ref: ref[i].answer, upgate: got[i].answer}
		if allowDeliberate {
			if row, ok := lookupDeliberate(proto, ref[i].step); ok && (row.upgate == "" || row.upgate == got[i].answer) {
				d.deliberateWhy = row.why
			}
		}
		diffs = append(diffs, d)
	}
	return diffs
}

// compareWithUpgate compares a protocol's run on the reference server
// (refName) with upgate's, answers and trees, fails the test for any
// difference deliberateDiffs does not list, and checks that proto's rows
// name steps that ran. DIFF_DUMP=1 logs every step's two answers.
func compareWithUpgate(t *testing.T, proto, refName string, refRes []stepResult, refTree map[string]treeEntry, ugRes []stepResult, ugTree map[string]treeEntry) {
	t.Helper()
	if os.Getenv("DIFF_DUMP") != "" {
		for i := range refRes {
			t.Logf("%03d %s\n\t%s: %s\n\tupgate: %s", i, refRes[i].step, refName, refRes[i].answer, ugRes[i].answer)
		}
	}
	diffs := compareRuns(t, proto, refRes, ugRes, true)
	diffs = append(diffs, compareTrees(proto, refTree, ugTree, true)...)
	report(t, refName, "upgate", diffs)
	checkRows(t, proto, ranSteps(refRes, refTree, ugTree), diffs)
}

// compareSelf compares two runs of a protocol on two servers of one kind
// (name#1, name#2), a self-check of the harness: any difference fails.
func compareSelf(t *testing.T, proto, name string, r1 []stepResult, t1 map[string]treeEntry, r2 []stepResult, t2 map[string]treeEntry) {
	t.Helper()
	diffs := compareRuns(t, proto, r1, r2, false)
	diffs = append(diffs, compareTrees(proto, t1, t2, false)...)
	report(t, name+"#1", name+"#2", diffs)
}

// checkRows fails the test for each row of proto's deliberateDiffs that
// no longer earns its place in a run of every step: its step (or tree
// entry) never ran, as when a step was renamed, or ran and matched the
// reference everywhere, as when the difference was fixed (a stale
// reason, to be removed with it). diffs are the run's differences
// against the reference, ran the steps and tree entries it compared.
func checkRows(t *testing.T, proto string, ran map[string]bool, diffs []difference) {
	t.Helper()
	listed := map[string]bool{}
	for _, d := range diffs {
		if d.deliberateWhy != "" {
			listed[d.name] = true
		}
	}
	for _, row := range deliberateDiffs {
		switch {
		case row.proto != proto || row.step == "":
		case !ran[row.step]:
			t.Errorf("deliberateDiffs lists %s step %q, which did not run: rename or remove the row", proto, row.step)
		case !listed[row.step]:
			t.Errorf("deliberateDiffs lists %s step %q, which no longer differs: remove the row (and its reason if no other row has it)", proto, row.step)
		}
	}
}

// ranSteps is the set of steps of res and tree entries ("tree " and the
// key) of trees, as deliberateDiffs names them.
func ranSteps(res []stepResult, trees ...map[string]treeEntry) map[string]bool {
	ran := map[string]bool{}
	for _, r := range res {
		ran[r.step] = true
	}
	for _, tree := range trees {
		for k := range tree {
			ran["tree "+k] = true
		}
	}
	return ran
}

// report logs every difference and fails the test on those not listed as
// deliberate.
func report(t *testing.T, refName, gotName string, diffs []difference) {
	t.Helper()
	var bad int
	for _, d := range diffs {
		if d.deliberateWhy != "" {
			t.Logf("deliberate difference at %s:\n\t%s: %s\n\t%s: %s\n\twhy: %s", d.step, refName, d.ref, gotName, d.upgate, d.deliberateWhy)
			continue
		}
		bad++
		t.Errorf("DIFFERENCE at %s:\n\t%s: %s\n\t%s: %s", d.step, refName, d.ref, gotName, d.upgate)
	}
	if bad > 0 {
		t.Logf("%d differences not listed as deliberate (of %d)", bad, len(diffs))
	}
}

// canonTime shows a time as "now" when it lies within ten minutes of the
// run (a time the server took from its clock, which differs between two
// runs), else exactly (a time a step set).
func canonTime(sec int64) string {
	if d := time.Since(time.Unix(sec, 0)); d < 10*time.Minute && d > -10*time.Minute {
		return "now"
	}
	return time.Unix(sec, 0).UTC().Format(time.RFC3339)
}

// treeEntry is one file system object under a server's directory.
type treeEntry struct {
	typ    string // "dir", "file", "link", "other"
	perm   string // permission and special bits, octal
	size   int64  // files only
	mtime  string // canonTime
	target string // links: the target, with the server's own directory as "/"
	sha    string // files: sha256 of the contents
}

func (e treeEntry) String() string {
	switch e.typ {
	case "file":
		return fmt.Sprintf("file %s size=%d mtime=%s sha256=%.16s", e.perm, e.size, e.mtime, e.sha)
	case "link":
		return fmt.Sprintf("link -> %q", e.target)
	default:
		return fmt.Sprintf("%s %s mtime=%s", e.typ, e.perm, e.mtime)
	}
}

// snapshot reads the tree under dir: every entry's type, mode, size,
// mtime, link target and content hash, keyed by its path (quoted, so
// that any byte shows). Link targets under dir are shown relative to it,
// as the client saw them. The top directory itself is left out. At most
// 10,000 entries.
func snapshot(t *testing.T, dir string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		if len(out) > 10000 {
			return fmt.Errorf("more than 10,000 entries under %s", dir)
		}
		rel, _ := filepath.Rel(dir, p)
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		sys := st.Sys().(*syscall.Stat_t)
		e := treeEntry{perm: fmt.Sprintf("%04o", sys.Mode&0o7777), mtime: canonTime(sys.Mtim.Sec)}
		switch st.Mode().Type() {
		case 0:
			e.typ, e.size = "file", st.Size()
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			e.sha = hex.EncodeToString(s[:])
		case fs.ModeDir:
			e.typ = "dir"
		case fs.ModeSymlink:
			e.typ = "link"
			e.target, err = os.Readlink(p)
			if err != nil {
				return err
			}
			if rest, ok := strings.CutPrefix(e.target, dir); ok && (rest == "" || rest[0] == '/') {
				e.target = "/" + strings.TrimPrefix(rest, "/")
			}
		default:
			e.typ = "other"
		}
		out[fmt.Sprintf("%q", "/"+rel)] = e
		return nil
	})
	if err != nil {
		t.Fatalf("reading the tree %s: %v", dir, err)
	}
	return out
}

// compareTrees compares two snapshots; entries with control characters
// in their names count as deliberate when allowDeliberate.
func compareTrees(proto string, ref, got map[string]treeEntry, allowDeliberate bool) []difference {
	keys := map[string]bool{}
	for k := range ref {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	var diffs []difference
	show := func(m map[string]treeEntry, k string) string {
		if e, ok := m[k]; ok {
			return e.String()
		}
		return "(absent)"
	}
	for _, k := range sorted {
		r, g := show(ref, k), show(got, k)
		if r == g {
			continue
		}
		d := difference{step: "tree " + k, name: "tree " + k, ref: r, upgate: g}
		if raw, err := strconv.Unquote(k); allowDeliberate && err == nil && hasCtl(raw) {
			d.deliberateWhy = whyCtl
		} else if row, ok := lookupDeliberate(proto, d.step); allowDeliberate && ok && row.upgate == g {
			d.deliberateWhy = row.why
		}
		diffs = append(diffs, d)
	}
	return diffs
}
