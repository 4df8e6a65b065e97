package backend

import (
	"errors"
	"io"
	"os"
	"path"
)

// viewDir is an open directory whose listing shows this session's uploads
// in progress in it.
type viewDir struct {
	FileWrapper
	v     *View
	dir   string
	seen  map[string]bool // uploads' names already listed
	extra []os.FileInfo   // uploads not yet listed, once the inner listing ended
	done  bool            // the inner listing has ended
}

// Readdir implements afero.File: the inner listing, page by page, with
// each upload in progress in this directory in place of the entry of its
// name, or after the last entry.
func (d *viewDir) Readdir(count int) ([]os.FileInfo, error) {
	if d.seen == nil {
		d.seen = map[string]bool{}
		d.v.settle()
	}
	var fis []os.FileInfo
	if !d.done {
		var err error
		fis, err = d.FileWrapper.Readdir(count)
		ups := d.uploads()
		for i, fi := range fis {
			if u, ok := ups[fi.Name()]; ok {
				if ufi, err := u.infoNow(); err == nil {
					fis[i] = ufi
					d.seen[fi.Name()] = true
				}
			}
		}
		switch {
		case err != nil && !errors.Is(err, io.EOF):
			return fis, err
		case count > 0 && err == nil && len(fis) == count:
			return fis, nil // more may follow
		}
		d.done = true
		for name, u := range ups {
			if d.seen[name] {
				continue
			}
			if ufi, err := u.infoNow(); err == nil {
				d.extra = append(d.extra, ufi)
			}
		}
	}
	if count <= 0 {
		fis = append(fis, d.extra...)
		d.extra = nil
		return fis, nil
	}
	n := min(count-len(fis), len(d.extra))
	fis = append(fis, d.extra[:n]...)
	d.extra = d.extra[n:]
	if len(fis) == 0 {
		return nil, io.EOF
	}
	return fis, nil
}

// uploads maps the names of this session's uploads in progress directly
// inside the directory to their files.
func (d *viewDir) uploads() map[string]*viewFile {
	d.v.mu.Lock()
	paths := make([]string, 0)
	for p := range d.v.open {
		if path.Dir(p) == d.dir && p != d.dir {
			paths = append(paths, p)
		}
	}
	d.v.mu.Unlock()
	out := map[string]*viewFile{}
	for _, p := range paths {
		if u := d.v.upload(p); u != nil {
			out[path.Base(p)] = u
		}
	}
	return out
}

// Chmod implements ModeSetter, on the directory the handle opened: a
// mode that takes a search bit away from a directory above the
// session's uploads makes them unreachable by name, as a chmod by path
// does (View.cutSearch).
func (d *viewDir) Chmod(mode os.FileMode) error {
	if err := d.FileWrapper.Chmod(mode); err != nil {
		return err
	}
	d.v.checkSearch(d.v.pendingUploads())
	return nil
}

// Readdirnames implements afero.File.
func (d *viewDir) Readdirnames(n int) ([]string, error) {
	fis, err := d.Readdir(n)
	names := make([]string, len(fis))
	for i, fi := range fis {
		names[i] = fi.Name()
	}
	return names, err
}
