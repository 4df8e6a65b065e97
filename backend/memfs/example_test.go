package memfs_test

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/upgate/upgate/backend"
	"github.com/upgate/upgate/backend/memfs"
)

// An upload is invisible until Close commits it; a disk that fills up in
// the middle of one leaves the old file as it was.
func Example() {
	fsys := memfs.New(memfs.Options{})
	_ = fsys.Mkdir("/site", 0o755)

	save := func(data string) error {
		f, err := fsys.Create("/site/index.php")
		if err != nil {
			return err
		}
		if _, err := io.WriteString(f, data); err != nil {
			// What a frontend does when a transfer fails: abort, then
			// close.
			f.(backend.TransferAborter).TransferError(err)
			_ = f.Close()
			return err
		}
		return f.Close()
	}
	show := func() {
		b, err := readAll(fsys, "/site/index.php")
		fmt.Printf("index.php: %q %v\n", b, err)
	}

	if err := save("<?php echo 1;"); err != nil {
		fmt.Println(err)
	}
	show()

	// While the fault is in force, every write to a .php file under /site
	// fails: the disk is full.
	full := fsys.Inject(memfs.Fault{Op: memfs.OpWrite, Path: "/site/*.php", Err: syscall.ENOSPC})
	err := save("<?php echo 2;")
	fmt.Println(err, errors.Is(err, syscall.ENOSPC))
	show()
	full.Remove()

	if err := save("<?php echo 3;"); err != nil {
		fmt.Println(err)
	}
	show()
	// Output:
	// index.php: "<?php echo 1;" <nil>
	// write /site/index.php: no space left on device true
	// index.php: "<?php echo 1;" <nil>
	// index.php: "<?php echo 3;" <nil>
}

func readAll(fsys *memfs.FS, name string) (string, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}

// A Fault's Func decides call by call; here the second commit of any file
// fails with an I/O error, and the path keeps what the first committed.
func ExampleFault_func() {
	fsys := memfs.New(memfs.Options{})
	commits := 0
	fsys.Inject(memfs.Fault{Op: memfs.OpClose, Func: func(op memfs.Op, path string) error {
		if commits++; commits == 2 {
			return syscall.EIO
		}
		return nil
	}})
	for _, v := range []string{"one", "two"} {
		f, _ := fsys.OpenFile("/v", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		_, _ = io.WriteString(f, v)
		fmt.Println(f.Close())
	}
	b, _ := readAll(fsys, "/v")
	fmt.Println(b)
	// Output:
	// <nil>
	// close /v: input/output error
	// one
}
