package webdav

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/adler32"
	"strings"
)

// errChecksum is an upload whose content does not match the OC-Checksum
// its client sent with it (400): the file is not written.
var errChecksum = errors.New("the computed checksum does not match the one received from the client")

// bodySum checks a PUT's body against the OC-Checksum header that
// ownCloud's and Nextcloud's clients and rclone (vendors owncloud and
// nextcloud) send with an upload: "TYPE:hex" (SHA1, MD5, Adler32,
// SHA256, SHA3-256, as ownCloud names them), or several such separated
// by spaces, as ownCloud stores and returns them. ownCloud's server
// refuses an upload whose content does not match; so does upgate, before
// the upload is committed, so that a body changed on its way never
// replaces the file. Every digest of a type upgate computes must match.
type bodySum struct {
	sums []digest
}

// digest is one TYPE:hex of the header.
type digest struct {
	algo string // as the client named it
	h    hash.Hash
	want []byte
}

// newBodySum reads an OC-Checksum header: nil, nil when it names no type
// upgate computes (the upload goes on unchecked, as on ownCloud); an
// error when one it does has a digest that is not hex of the right
// length, or a value is not TYPE:hex.
func newBodySum(header string) (*bodySum, error) {
	var s bodySum
	for _, v := range strings.Fields(header) {
		d, err := newDigest(v)
		if err != nil {
			return nil, fmt.Errorf("OC-Checksum %q: %w", header, err)
		}
		if d != nil {
			s.sums = append(s.sums, *d)
		}
	}
	if len(s.sums) == 0 {
		return nil, nil
	}
	return &s, nil
}

// newDigest reads one TYPE:hex; nil, nil for a type upgate does not
// compute.
func newDigest(v string) (*digest, error) {
	algo, hexDigits, ok := strings.Cut(v, ":")
	if !ok {
		return nil, fmt.Errorf("%q: want TYPE:hex", v)
	}
	var h hash.Hash
	switch strings.ToUpper(algo) {
	case "SHA1":
		h = sha1.New()
	case "MD5":
		h = md5.New()
	case "SHA256":
		h = sha256.New()
	case "SHA3-256":
		h = sha3.New256()
	case "ADLER32":
		h = adler32.New()
		// Qt's clients write it without leading zeros.
		if len(hexDigits) < 8 {
			hexDigits = strings.Repeat("0", 8-len(hexDigits)) + hexDigits
		}
	default:
		return nil, nil
	}
	want, err := hex.DecodeString(hexDigits)
	if err != nil || len(want) != h.Size() {
		return nil, fmt.Errorf("a %s digest is %d hex digits", algo, 2*h.Size())
	}
	return &digest{algo: algo, h: h, want: want}, nil
}

// hash hashes p with every digest's type.
func (s *bodySum) hash(p []byte) {
	for _, d := range s.sums {
		d.h.Write(p)
	}
}

// check compares what the body held with every digest sent.
func (s *bodySum) check() error {
	for _, d := range s.sums {
		got := d.h.Sum(nil)
		if bytes.Equal(got, d.want) {
			continue
		}
		return fmt.Errorf("%w: %s:%x, not %s:%x", errChecksum, d.algo, got, d.algo, d.want)
	}
	return nil
}
