package sftp

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// loadHostKey reads the SSH host key at p, or generates an ed25519 key and
// stores it there (mode 0600, written to a temporary file, synced and
// linked into place, so a key stored meanwhile by another process is never
// replaced) if p does not exist yet.
func loadHostKey(p string, log *slog.Logger) (ssh.Signer, error) {
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("sftp: host key is readable by others; it should be mode 0600", "path", p, "mode", fi.Mode().Perm())
		}
		signer, err := ssh.ParsePrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("sftp: host key %s: %w", p, err)
		}
		return signer, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("sftp: host key %s: %w", p, err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sftp: generate host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "arkbox host key")
	if err != nil {
		return nil, fmt.Errorf("sftp: encode host key: %w", err)
	}
	if err := writeFileSync(p, pem.EncodeToMemory(block), 0o600); errors.Is(err, fs.ErrExist) {
		return loadHostKey(p, log) // another process stored one first
	} else if err != nil {
		return nil, fmt.Errorf("sftp: store host key %s: %w", p, err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("sftp: host key: %w", err)
	}
	log.Info("sftp: generated a new host key", "path", p, "fingerprint", ssh.FingerprintSHA256(signer.PublicKey()))
	return signer, nil
}

// writeFileSync writes data to p atomically and durably.
func writeFileSync(p string, data []byte, mode fs.FileMode) error {
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".hostkey-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp, p); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
