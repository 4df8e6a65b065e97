package ftpserver

// Listings page by page (upgate fork): LIST, NLST, MLSD and STAT of a
// directory write each page of entries as the driver reads it, so that a
// listing holds one page whatever the directory holds. Upstream read the
// whole directory into memory first (a 50,000-entry directory cost tens of
// megabytes per listing).

import (
	"errors"
	"io"
	"os"
	"path"

	"github.com/spf13/afero"
)

// ClientDriverExtensionDirLister is a driver that opens a directory for a
// listing: LIST, NLST, MLSD and STAT call OpenDir, then Readdir with a page
// size until io.EOF, and write each page as it comes; entries are shown as
// Readdir returns them ("." and ".." are the driver's to leave out). An
// error from OpenDir or the first page is the command's reply; a later one
// ends the transfer (upgate fork).
type ClientDriverExtensionDirLister interface {
	OpenDir(name string) (afero.File, error)
}

// listPageSize is how many entries a listing asks the driver for at once.
const listPageSize = 512

// dirPages is a listing being written: its first page, read before the
// reply that opens the transfer, and the directory to read the rest from
// (nil when first is the whole listing).
type dirPages struct {
	first []os.FileInfo
	dir   afero.File
	glob  *listGlob // the entries' pattern, or nil for all (patch 22)
}

// each calls fn with every page, then closes the directory.
func (p *dirPages) each(fn func([]os.FileInfo) error) error {
	defer p.close()

	if err := fn(p.filter(p.first)); err != nil {
		return err
	}

	for p.dir != nil {
		page, err := p.dir.Readdir(listPageSize)
		if page = p.filter(page); len(page) > 0 {
			if errFn := fn(page); errFn != nil {
				return errFn
			}
		}

		if errors.Is(err, io.EOF) {
			return nil
		}

		if err != nil {
			return err
		}
	}

	return nil
}

// filter keeps a page's entries that match the pattern, if any.
func (p *dirPages) filter(page []os.FileInfo) []os.FileInfo {
	if p.glob == nil {
		return page
	}

	kept := page[:0]

	for _, f := range page {
		if p.glob.matches(f.Name()) {
			kept = append(kept, f)
		}
	}

	return kept
}

func (p *dirPages) close() {
	if p.dir != nil {
		_ = p.dir.Close()
		p.dir = nil
	}
}

// getFilePages is getFileList page by page when the driver implements
// ClientDriverExtensionDirLister: it opens the directory and reads its
// first page, so that an error is still the command's reply. With
// filePathAllowed (LIST, NLST, STAT), a pattern lists the matches in its
// directory, which must be one (list_glob.go).
func (c *clientHandler) getFilePages(param string, filePathAllowed bool) (*dirPages, string, error) {
	var options string
	if !c.server.settings.DisableLISTArgs {
		options, param = c.splitLISTArgs(param)
	}

	var glob *listGlob

	if filePathAllowed {
		if g, ok := c.globOf(options, param); ok {
			glob, param = &g, g.dirArg()
		}
	}

	lister, ok := c.driver.(ClientDriverExtensionDirLister)
	if !ok {
		files, parent, err := c.getFileList(param, filePathAllowed)

		return &dirPages{first: files, glob: glob}, parent, err
	}

	listPath := c.absPath(param)
	c.SetListPath(listPath)

	info, entry, err := c.listArgStat(param, listPath) // a trailing slash (patch 21), a link as a link (patch 32)
	if err != nil {
		return nil, "", newFileAccessError("couldn't stat", err)
	}

	if !info.IsDir() {
		if filePathAllowed {
			return &dirPages{first: []os.FileInfo{entry}}, path.Dir(c.getListPath()), nil
		}

		return nil, "", errFileList
	}

	dir, err := lister.OpenDir(listPath)
	if err != nil {
		return nil, "", newFileAccessError("couldn't open directory", err)
	}

	first, err := dir.Readdir(listPageSize)
	if err != nil && !errors.Is(err, io.EOF) {
		_ = dir.Close()

		return nil, "", err
	}

	pages := &dirPages{first: first, dir: dir, glob: glob}
	if errors.Is(err, io.EOF) {
		pages.close()
	}

	return pages, listPath, nil
}
