package sftpstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/arkbox/arkbox/internal/testpeer"
	"github.com/arkbox/arkbox/replicate/sftpstore"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/objstore/storetest"
)

func TestConformance(t *testing.T) {
	srv := testpeer.SSHD(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	n := 0
	for _, conns := range []int{1, 3} {
		t.Run(fmt.Sprint("conns=", conns), func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) objstore.Store {
				n++
				s, err := sftpstore.Open(context.Background(), sftpstore.Options{
					Addr: srv.Addr, User: srv.User, KeyFile: srv.KeyFile, KnownHosts: kh,
					Path: filepath.Join(srv.Dir, fmt.Sprint("repo", n)), Create: true, Conns: conns,
				})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}, storetest.Options{})
		})
	}
}

// A changed host key is refused with a message naming the known_hosts file.
func TestHostKeyPinned(t *testing.T) {
	srv := testpeer.SSHD(t)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	opt := sftpstore.Options{Addr: srv.Addr, User: srv.User, KeyFile: srv.KeyFile, KnownHosts: kh, Path: srv.Dir}
	s, err := sftpstore.Open(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	pinned, err := os.ReadFile(kh)
	if err != nil || !strings.Contains(string(pinned), "ssh-ed25519") {
		t.Fatalf("host key not pinned: %q %v", pinned, err)
	}
	// Same server again: accepted.
	s, err = sftpstore.Open(context.Background(), opt)
	if err != nil {
		t.Fatalf("second connection: %v", err)
	}
	s.Close()
	// Another server (another host key) on the address the file pins.
	other := testpeer.SSHD(t)
	forged := strings.Replace(string(pinned), srv.Addr[strings.LastIndex(srv.Addr, ":")+1:], other.Addr[strings.LastIndex(other.Addr, ":")+1:], 1)
	if err := os.WriteFile(kh, []byte(forged), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = sftpstore.Open(context.Background(), sftpstore.Options{Addr: other.Addr, User: other.User, KeyFile: other.KeyFile, KnownHosts: kh, Path: other.Dir})
	if err == nil || !strings.Contains(err.Error(), "host key") || !strings.Contains(err.Error(), kh) {
		t.Fatalf("changed host key: got %v", err)
	}
}

func TestWrongKey(t *testing.T) {
	srv := testpeer.SSHD(t)
	other := testpeer.SSHD(t)
	_, err := sftpstore.Open(context.Background(), sftpstore.Options{Addr: srv.Addr, User: srv.User, KeyFile: other.KeyFile,
		KnownHosts: filepath.Join(t.TempDir(), "kh"), Path: srv.Dir})
	if err == nil || !strings.Contains(err.Error(), "log in") {
		t.Fatalf("wrong key: %v", err)
	}
	if errors.Is(err, objstore.ErrNotFound) {
		t.Fatal("wrong key reported as not found")
	}
}
