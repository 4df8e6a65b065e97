package backend_test

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/upgate/upgate/backend"
)

// TestHashAlgorithms: each algorithm's New computes that checksum, and
// ParseHashAlgorithm knows the names FTP and the SSH checksum commands
// give it.
func TestHashAlgorithms(t *testing.T) {
	data := []byte("<?php echo 'upgate';\n")
	s1, s256, s512 := sha1.Sum(data), sha256.Sum256(data), sha512.Sum512(data)
	m5 := md5.Sum(data)
	want := map[backend.HashAlgorithm][]byte{
		backend.SHA256: s256[:],
		backend.SHA1:   s1[:],
		backend.MD5:    m5[:],
		backend.CRC32:  binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(data)),
		backend.SHA512: s512[:],
	}
	for algo, sum := range want {
		h, ok := algo.New()
		if !ok {
			t.Fatalf("%s: New found no hash", algo)
		}
		h.Write(data)
		if got := h.Sum(nil); !bytes.Equal(got, sum) {
			t.Errorf("%s: %x, want %x", algo, got, sum)
		}
	}
	if _, ok := backend.HashAlgorithm("sha3").New(); ok {
		t.Error("New of an unknown algorithm found one")
	}
	for name, algo := range map[string]backend.HashAlgorithm{
		"SHA-256": backend.SHA256, "sha256": backend.SHA256, "SHA-1": backend.SHA1, "MD5": backend.MD5,
		"CRC32": backend.CRC32, "crc": backend.CRC32, "SHA-512": backend.SHA512,
	} {
		if got, ok := backend.ParseHashAlgorithm(name); !ok || got != algo {
			t.Errorf("ParseHashAlgorithm(%q) = %q, %v; want %q", name, got, ok, algo)
		}
	}
	if got, ok := backend.ParseHashAlgorithm("SHA-3"); ok {
		t.Errorf("ParseHashAlgorithm(SHA-3) = %q", got)
	}
}
