package agentpb

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"hash/crc32"
)

// hashes is what each wire HashAlgorithm computes: the one table of
// checksum constructors that the agent (HashRequest) and the gateway's
// frontends (through backend.HashAlgorithm) share.
var hashes = map[HashAlgorithm]func() hash.Hash{
	HashAlgorithm_HASH_ALGORITHM_SHA256: sha256.New,
	HashAlgorithm_HASH_ALGORITHM_SHA1:   sha1.New,
	HashAlgorithm_HASH_ALGORITHM_MD5:    md5.New,
	HashAlgorithm_HASH_ALGORITHM_CRC32:  func() hash.Hash { return crc32.NewIEEE() },
	HashAlgorithm_HASH_ALGORITHM_SHA512: sha512.New,
}

// NewHash returns a new hash.Hash computing a; false for
// HASH_ALGORITHM_UNSPECIFIED and values this version does not know.
func (a HashAlgorithm) NewHash() (hash.Hash, bool) {
	f, ok := hashes[a]
	if !ok {
		return nil, false
	}
	return f(), true
}
