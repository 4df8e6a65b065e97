package ftpserver

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/afero"
)

// thrown if listing with a filePath isn't supported (MLSD, NLST)
var errFileList = errors.New("listing a file isn't allowed")

func (c *clientHandler) absPath(p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}

	return path.Join(c.Path(), p)
}

// getRelativePath returns the specified path as relative to the
// current working directory. The specified path must be cleaned
func (c *clientHandler) getRelativePath(inputPath string) string {
	var builder strings.Builder
	base := c.Path()

	for {
		if base == inputPath {
			return builder.String()
		}

		if !strings.HasSuffix(base, "/") {
			base += "/"
		}

		if strings.HasPrefix(inputPath, base) {
			builder.WriteString(strings.TrimPrefix(inputPath, base))

			return builder.String()
		}

		if base == "/" || base == "./" {
			return inputPath
		}

		builder.WriteString("../")

		base = path.Dir(path.Clean(base))
	}
}

func (c *clientHandler) handleCWD(param string) error {
	pathAbsolute := c.absPath(param)

	if stat, err := c.statCwd(pathAbsolute); err == nil {
		if stat.IsDir() {
			// upgate fork: the directory the links lead to, as vsftpd's
			// getcwd shows it.
			if rp, ok := c.driver.(ClientDriverExtensionRealPath); ok {
				if real, err := rp.RealPath(pathAbsolute); err == nil {
					pathAbsolute = real
				}
			}

			c.SetPath(pathAbsolute)
			c.writeMessage(StatusFileOK, "CD worked on "+pathAbsolute)
		} else {
			c.writeMessage(StatusActionNotTaken, fmt.Sprintf("Can't change directory to %s: Not a Directory", pathAbsolute))
		}
	} else {
		c.writeMessage(c.errorCode(err, StatusActionNotTaken), fmt.Sprintf("CD issue: %v", err))
	}

	return nil
}

func (c *clientHandler) handleMKD(param string) error {
	pathAbsolute := c.absPath(param)
	if err := c.driver.Mkdir(pathAbsolute, 0o755); err == nil {
		// handleMKD confirms to "quote-doubling"
		// https://tools.ietf.org/html/rfc959 , page 63
		c.writeMessage(StatusPathCreated, fmt.Sprintf(`Created dir "%s"`, quoteDoubling(pathAbsolute)))
	} else {
		c.writeMessage(c.errorCode(err, StatusActionNotTaken), fmt.Sprintf(`Could not create "%s" : %v`, quoteDoubling(pathAbsolute), err))
	}

	return nil
}

func (c *clientHandler) handleMKDIR(params string) {
	if params == "" {
		c.writeMessage(StatusSyntaxErrorNotRecognised, "Missing path")

		return
	}

	p := c.absPath(params)

	if err := c.driver.MkdirAll(p, 0o755); err == nil {
		c.writeMessage(StatusFileOK, "Created dir "+p)
	} else {
		c.writeMessage(c.errorCode(err, StatusActionNotTaken), fmt.Sprintf("Couldn't create dir %s: %v", p, err))
	}
}

func (c *clientHandler) handleRMD(param string) error {
	var err error

	pathAbsolute := c.absPath(param)

	err = c.entryDirSlash("rmdir", HasDirSlash(param), pathAbsolute) // upgate fork: a trailing slash (patch 21)

	if err == nil {
		if rmd, ok := c.driver.(ClientDriverExtensionRemoveDir); ok {
			err = rmd.RemoveDir(pathAbsolute)
		} else {
			err = c.driver.Remove(pathAbsolute)
		}
	}

	if err == nil {
		c.writeMessage(StatusFileOK, "Deleted dir "+pathAbsolute)
	} else {
		c.writeMessage(c.errorCode(err, StatusActionNotTaken), fmt.Sprintf("Could not delete dir %s: %v", pathAbsolute, err))
	}

	return nil
}

func (c *clientHandler) handleRMDIR(params string) {
	if params == "" {
		c.writeMessage(StatusSyntaxErrorNotRecognised, "Missing path")

		return
	}

	p := c.absPath(params)

	if err := c.driver.RemoveAll(p); err == nil {
		c.writeMessage(StatusFileOK, "Removed dir "+p)
	} else {
		c.writeMessage(c.errorCode(err, StatusActionNotTaken), fmt.Sprintf("Couldn't remove dir %s: %v", p, err))
	}
}

func (c *clientHandler) handleCDUP(_ string) error {
	parent, _ := path.Split(c.Path())
	if parent != "/" && strings.HasSuffix(parent, "/") {
		parent = parent[0 : len(parent)-1]
	}

	if _, err := c.statCwd(parent); err == nil {
		c.SetPath(parent)
		c.writeMessage(StatusFileOK, "CDUP worked on "+parent)
	} else {
		c.writeMessage(c.errorCode(err, StatusActionNotTaken), fmt.Sprintf("CDUP issue: %v", err))
	}

	return nil
}

func (c *clientHandler) handlePWD(_ string) error {
	c.writeMessage(StatusPathCreated, fmt.Sprintf(`"%s" is the current directory`, quoteDoubling(c.Path())))

	return nil
}

// splitLISTArgs splits a LIST, NLST or STAT argument into ls options and
// a path. upgate fork: as vsftpd, a first word starting with "-" is
// options, whichever they are (upstream took only -a, -l, -al and -la,
// and any other as part of the path), unless the whole argument names
// an existing path (upstream's rule).
func (c *clientHandler) splitLISTArgs(args string) (string, string) {
	if !strings.HasPrefix(args, "-") {
		return "", args
	}

	// a check for a non-existent directory error is more appropriate here
	// but we cannot assume that the driver implementation will return an
	// os.IsNotExist error.
	if _, err := c.driver.Stat(args); err == nil {
		return "", args
	}

	options, listPath, _ := strings.Cut(args, " ")

	return options, listPath
}

func (c *clientHandler) handleLIST(param string) error {
	info := fmt.Sprintf("LIST %v", param)

	if pages, _, err := c.getFilePages(param, true); err == nil || errors.Is(err, io.EOF) {
		if tr, errTr := c.TransferOpen(info); errTr == nil {
			err = c.dirTransferLIST(tr, pages)
			c.TransferClose(tr, err)

			return nil
		}

		pages.close()
	} else {
		if !c.isCommandAborted() {
			c.writeMessage(c.errorCode(err, StatusFileActionNotTaken), fmt.Sprintf("Could not list: %v", err))
		}
	}

	return nil
}

func (c *clientHandler) handleNLST(param string) error {
	info := fmt.Sprintf("NLST %v", param)

	// upgate fork: names below the directory as the client spelled it
	// (nlstName), a file as the client named it, as vsftpd answers.
	// With -l, NLST's lines are LIST's, as vsftpd's.
	var options string

	spelled := param
	if !c.server.settings.DisableLISTArgs {
		options, spelled = c.splitLISTArgs(param)
	}

	spelled = strings.TrimSpace(spelled)
	long := strings.Contains(options, "l")

	if pages, parentDir, err := c.getFilePages(param, true); err == nil || errors.Is(err, io.EOF) {
		if pages.glob != nil {
			spelled = pages.glob.dir // the matches below it (patch 22)
		}

		if !long && parentDir != c.getListPath() && len(pages.first) == 1 {
			pages.first = []os.FileInfo{renamedInfo{pages.first[0], spelled}} // a file
			spelled = ""
		}

		if tr, errTrOpen := c.TransferOpen(info); errTrOpen == nil {
			if long {
				err = c.dirTransferLIST(tr, pages)
			} else {
				err = c.dirTransferNLST(tr, pages, spelled)
			}
			c.TransferClose(tr, err)

			return nil
		}

		pages.close()
	} else {
		if !c.isCommandAborted() {
			c.writeMessage(c.errorCode(err, StatusFileActionNotTaken), fmt.Sprintf("Could not list: %v", err))
		}
	}

	return nil
}

func (c *clientHandler) dirTransferNLST(writer io.Writer, pages *dirPages, spelled string) error {
	return pages.each(func(files []os.FileInfo) error {
		return c.writeNLST(writer, files, spelled)
	})
}

func (c *clientHandler) writeNLST(writer io.Writer, files []os.FileInfo, spelled string) error {
	if len(files) == 0 {
		_, err := writer.Write([]byte(""))
		if err != nil {
			err = newNetworkError("couldn't send NLST data", err)
		}

		return err
	}

	for _, file := range files {
		// Based on RFC 959 NLST is intended to return information that can be used
		// by a program to further process the files automatically.
		// So we return paths relative to the current working directory
		if _, err := fmt.Fprintf(writer, "%s\r\n", nlstName(spelled, file.Name())); err != nil {
			return newNetworkError("couldn't send NLST data", err)
		}
	}

	return nil
}

func (c *clientHandler) handleMLSD(param string) error {
	if c.server.settings.DisableMLSD && !c.isCommandAborted() {
		c.writeMessage(StatusSyntaxErrorNotRecognised, "MLSD has been disabled")

		return nil
	}

	info := fmt.Sprintf("MLSD %v", param)

	if pages, _, err := c.getFilePages(param, false); err == nil || errors.Is(err, io.EOF) {
		if tr, errTr := c.TransferOpen(info); errTr == nil {
			err = c.dirTransferMLSD(tr, pages)
			c.TransferClose(tr, err)

			return nil
		}

		pages.close()
	} else {
		if !c.isCommandAborted() {
			c.writeMessage(c.errorCode(err, StatusActionNotTaken), fmt.Sprintf("Could not list: %v", err))
		}
	}

	return nil
}

const (
	dateFormatStatTime      = "Jan _2 15:04"          // LIST date formatting with hour and minute
	dateFormatStatYear      = "Jan _2  2006"          // LIST date formatting with year
	dateFormatStatOldSwitch = time.Hour * 24 * 30 * 6 // 6 months ago
	dateFormatMLSD          = "20060102150405"        // MLSD date formatting
	fakeUser                = "ftp"
	fakeGroup               = "ftp"
)

func (c *clientHandler) fileStat(file os.FileInfo) string {
	modTime := file.ModTime()

	var dateFormat string

	if c.connectedAt.Sub(modTime) > dateFormatStatOldSwitch {
		dateFormat = dateFormatStatYear
	} else {
		dateFormat = dateFormatStatTime
	}

	// upgate fork: the mode as ls -l prints it (Go's FileMode.String is
	// not: "Lrwxrwxrwx", "dtrwxrwxrwx"), the link count and numeric owner
	// where the FileInfo knows them (FileInfoStat), and a symbolic link's
	// target (FileInfoLinkTarget), as vsftpd lists them.
	links, owner, group := "1", fakeUser, fakeGroup
	if st, ok := file.(FileInfoStat); ok {
		links = strconv.FormatUint(st.Nlink(), 10)
		owner, group = strconv.FormatUint(uint64(st.Uid()), 10), strconv.FormatUint(uint64(st.Gid()), 10)
	}

	name := file.Name()
	if lt, ok := file.(FileInfoLinkTarget); ok && file.Mode()&os.ModeSymlink != 0 {
		if target := lt.LinkTarget(); target != "" {
			name += " -> " + target
		}
	}

	return fmt.Sprintf(
		"%s %4s %-8s %-8s %12d %s %s",
		lsMode(file.Mode()),
		links,
		owner,
		group,
		file.Size(),
		file.ModTime().Format(dateFormat),
		name,
	)
}

// lsMode formats a mode as ls -l does: a type letter, then rwx triplets
// with s/S and t/T for setuid, setgid and sticky (upgate fork).
func lsMode(mode os.FileMode) string {
	buf := []byte("-rwxrwxrwx")

	switch {
	case mode.IsDir():
		buf[0] = 'd'
	case mode&os.ModeSymlink != 0:
		buf[0] = 'l'
	case mode&os.ModeNamedPipe != 0:
		buf[0] = 'p'
	case mode&os.ModeSocket != 0:
		buf[0] = 's'
	case mode&os.ModeCharDevice != 0:
		buf[0] = 'c'
	case mode&os.ModeDevice != 0:
		buf[0] = 'b'
	}

	for i := range 9 {
		if mode&(1<<uint(8-i)) == 0 {
			buf[i+1] = '-'
		}
	}

	special := func(pos int, set bool, lower, upper byte) {
		if !set {
			return
		}

		if buf[pos] == '-' {
			buf[pos] = upper
		} else {
			buf[pos] = lower
		}
	}
	special(3, mode&os.ModeSetuid != 0, 's', 'S')
	special(6, mode&os.ModeSetgid != 0, 's', 'S')
	special(9, mode&os.ModeSticky != 0, 't', 'T')

	return string(buf)
}

// fclairamb (2018-02-13): #64: Removed extra empty line
func (c *clientHandler) dirTransferLIST(writer io.Writer, pages *dirPages) error {
	return pages.each(func(files []os.FileInfo) error { return c.writeLIST(writer, files) })
}

func (c *clientHandler) writeLIST(writer io.Writer, files []os.FileInfo) error {
	if len(files) == 0 {
		_, err := writer.Write([]byte(""))
		if err != nil {
			err = newNetworkError("error writing LIST entry", err)
		}

		return err
	}

	for _, file := range files {
		if _, err := fmt.Fprintf(writer, "%s\r\n", c.fileStat(file)); err != nil {
			return fmt.Errorf("error writing LIST entry: %w", err)
		}
	}

	return nil
}

// fclairamb (2018-02-13): #64: Removed extra empty line
func (c *clientHandler) dirTransferMLSD(writer io.Writer, pages *dirPages) error {
	return pages.each(func(files []os.FileInfo) error { return c.writeMLSD(writer, files) })
}

func (c *clientHandler) writeMLSD(writer io.Writer, files []os.FileInfo) error {
	if len(files) == 0 {
		_, err := writer.Write([]byte(""))
		if err != nil {
			err = newNetworkError("error writing MLSD entry", err)
		}

		return err
	}

	for _, file := range files {
		if err := c.writeMLSxEntry(writer, file, file.Name()); err != nil {
			return err
		}
	}

	return nil
}

// getFileList lists param, a path without ls options (upgate fork:
// getFilePages, its caller, takes them off).
func (c *clientHandler) getFileList(param string, filePathAllowed bool) ([]os.FileInfo, string, error) {
	// directory or filePath
	listPath := c.absPath(param)
	c.SetListPath(listPath)

	// return list of single file if directoryPath points to file and filePathAllowed
	info, entry, err := c.listArgStat(param, listPath) // upgate fork: a trailing slash (patch 21), a link as a link (patch 32)
	if err != nil {
		return nil, "", newFileAccessError("couldn't stat", err)
	}

	if !info.IsDir() {
		if filePathAllowed {
			// upgate fork: a link is listed as the link.
			return []os.FileInfo{entry}, path.Dir(c.getListPath()), nil
		}

		return nil, "", errFileList
	}

	var files []fs.FileInfo

	if fileList, ok := c.driver.(ClientDriverExtensionFileList); ok {
		files, err = fileList.ReadDir(listPath)

		return files, c.getListPath(), err
	}

	directory, errOpenFile := c.driver.Open(listPath)
	if errOpenFile != nil {
		return nil, "", newFileAccessError("couldn't open directory", errOpenFile)
	}

	defer c.closeDirectory(listPath, directory)

	files, err = directory.Readdir(-1)

	return files, c.getListPath(), err
}

func (c *clientHandler) closeDirectory(directoryPath string, directory afero.File) {
	if errClose := directory.Close(); errClose != nil {
		c.logger.Error("Couldn't close directory", "err", errClose, "directory", directoryPath)
	}
}

func quoteDoubling(s string) string {
	if !strings.Contains(s, "\"") {
		return s
	}

	return strings.ReplaceAll(s, "\"", `""`)
}
