package ftpserver

import (
	"errors"
	"fmt"
	"io"
)

var (
	// ErrStorageExceeded defines the error mapped to the FTP 552 reply code.
	// As for RFC 959 this error is checked for STOR, APPE
	ErrStorageExceeded = errors.New("storage limit exceeded")
	// ErrFileNameNotAllowed defines the error mapped to the FTP 553 reply code.
	// As for RFC 959 this error is checked for STOR, APPE, RNTO
	ErrFileNameNotAllowed = errors.New("filename not allowed")
)

func getErrorCode(err error, defaultCode int) int {
	switch {
	case errors.Is(err, ErrStorageExceeded):
		return StatusActionAborted
	case errors.Is(err, ErrFileNameNotAllowed):
		return StatusActionNotTakenNoFile
	default:
		return defaultCode
	}
}

// errorCode is the reply code for err: getErrorCode's, then the driver's
// choice where it implements MainDriverExtensionReplyCode.
func (c *clientHandler) errorCode(err error, defaultCode int) int {
	code := getErrorCode(err, defaultCode)
	if c.server == nil || err == nil {
		return code
	}

	if d, ok := c.server.driver.(MainDriverExtensionReplyCode); ok {
		code = d.ReplyCode(c, err, code)
	}

	return code
}

// DriverError is a wrapper is for any error that occur while contacting the drivers
type DriverError struct {
	str string
	err error
}

func newDriverError(str string, err error) DriverError {
	return DriverError{str: str, err: err}
}

func (e DriverError) Error() string {
	return fmt.Sprintf("driver error: %s: %v", e.str, e.err)
}

func (e DriverError) Unwrap() error {
	return e.err
}

// NetworkError is a wrapper for any error that occur while contacting the network
type NetworkError struct {
	str string
	err error
}

func newNetworkError(str string, err error) NetworkError {
	return NetworkError{str: str, err: err}
}

func (e NetworkError) Error() string {
	return fmt.Sprintf("network error: %s: %v", e.str, e.err)
}

func (e NetworkError) Unwrap() error {
	return e.err
}

// FileAccessError is a wrapper for any error that occur while accessing the file system
type FileAccessError struct {
	str string
	err error
}

func newFileAccessError(str string, err error) FileAccessError {
	return FileAccessError{str: str, err: err}
}

func (e FileAccessError) Error() string {
	return fmt.Sprintf("file access error: %s: %v", e.str, e.err)
}

func (e FileAccessError) Unwrap() error {
	return e.err
}

// dataConnError is an error of a transfer's data connection itself (upgate
// fork): the client closed or reset it, or it timed out. The transfer is
// answered 426, as vsftpd answers it, not with a driver error's code.
type dataConnError struct {
	err error
}

func (e dataConnError) Error() string { return e.err.Error() }

func (e dataConnError) Unwrap() error { return e.err }

// dataConnReader is an upload's data connection: its read errors, io.EOF
// (the upload's end) aside, are dataConnErrors.
type dataConnReader struct {
	r io.Reader
}

func (d dataConnReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = dataConnError{err: err}
	}

	return n, err
}

// dataConnWriter is a download's data connection: its write errors are
// dataConnErrors.
type dataConnWriter struct {
	w io.Writer
}

func (d dataConnWriter) Write(p []byte) (int, error) {
	n, err := d.w.Write(p)
	if err != nil {
		err = dataConnError{err: err}
	}

	return n, err
}
