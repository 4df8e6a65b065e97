package webdav

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha3"
	"encoding/binary"
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
// nextcloud) send with an upload, "TYPE:hex" (SHA1, MD5, Adler32,
// SHA256, SHA3-256, as ownCloud names them). ownCloud's server refuses
// an upload whose content does not match; so does upgate, before the
// upload is committed, so that a body changed on its way never replaces
// the file.
type bodySum struct {
	algo string // as the client named it
	h    hash.Hash
	want []byte
}

// newBodySum reads an OC-Checksum header: nil, nil for a type upgate
// does not compute (the upload goes on unchecked, as on ownCloud); an
// error for one it does whose digest is not hex of the right length.
func newBodySum(header string) (*bodySum, error) {
	algo, digest, ok := strings.Cut(strings.TrimSpace(header), ":")
	if !ok {
		return nil, fmt.Errorf("OC-Checksum %q: want TYPE:hex", header)
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
		if len(digest) < 8 {
			digest = strings.Repeat("0", 8-len(digest)) + digest
		}
	default:
		return nil, nil
	}
	want, err := hex.DecodeString(digest)
	if err != nil || len(want) != h.Size() {
		return nil, fmt.Errorf("OC-Checksum %q: a %s digest is %d hex digits", header, algo, 2*h.Size())
	}
	return &bodySum{algo: algo, h: h, want: want}, nil
}

// check compares what the body held with the digest sent.
func (s *bodySum) check() error {
	got := s.h.Sum(nil)
	if bytes.Equal(got, s.want) {
		return nil
	}
	shown := hex.EncodeToString(got)
	if len(got) == 4 && strings.EqualFold(s.algo, "adler32") {
		shown = fmt.Sprintf("%08x", binary.BigEndian.Uint32(got))
	}
	return fmt.Errorf("%w: %s:%s, not %s:%x", errChecksum, s.algo, shown, s.algo, s.want)
}
