package sftp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// LoadHostKeys reads each host key file, generating and saving (mode
// 0600) the ones that do not exist yet, so a gateway keeps its identity
// across restarts. The key type of a new file follows its name: "rsa"
// gives RSA 3072, "ecdsa" ECDSA P-256, anything else Ed25519.
func LoadHostKeys(paths []string) ([]ssh.Signer, error) {
	var signers []ssh.Signer
	for _, p := range paths {
		pemBytes, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			pemBytes, err = generateHostKey(p)
		}
		if err != nil {
			return nil, fmt.Errorf("sftp: host key %s: %w", p, err)
		}
		s, err := ssh.ParsePrivateKey(pemBytes)
		if err != nil {
			return nil, fmt.Errorf("sftp: host key %s: %w", p, err)
		}
		signers = append(signers, s)
	}
	if len(signers) == 0 {
		return nil, errors.New("sftp: no host key configured")
	}
	return signers, nil
}

func generateHostKey(path string) ([]byte, error) {
	var key crypto.Signer
	var err error
	base := strings.ToLower(filepath.Base(path))
	switch {
	case strings.Contains(base, "ecdsa"):
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case strings.Contains(base, "rsa"):
		key, err = rsa.GenerateKey(rand.Reader, 3072)
	default:
		_, key, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(key, "upgate host key")
	if err != nil {
		return nil, err
	}
	pemBytes := pem.EncodeToMemory(block)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// O_EXCL: two gateways starting at once must not overwrite each other.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(pemBytes); err != nil {
		f.Close()
		return nil, err
	}
	return pemBytes, f.Close()
}
