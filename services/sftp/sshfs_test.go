package sftp

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSSHFS mounts a share with sshfs (password on stdin), copies a tree
// in with cp -a (with symlinks, an empty directory, an executable and old
// times), unmounts and compares the share with the source, times
// included.
func TestSSHFS(t *testing.T) {
	t.Parallel()
	needBins(t, "sshfs", "fusermount3")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse: FUSE is not available here")
	}
	f := newFixture(t, fixtureOptions{})
	src, files := goSrc(t, "mail", "netip", "rpc", "smtp", "textproto", "url", "internal")
	os.Symlink("rpc/server.go", filepath.Join(src, "link"))
	os.Symlink("../net/rpc", filepath.Join(src, "uplink"))
	os.Mkdir(filepath.Join(src, "empty"), 0o700)
	os.WriteFile(filepath.Join(src, "run.sh"), []byte("#!/bin/sh\n"), 0o755)
	old := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
	os.Chtimes(filepath.Join(src, "run.sh"), old, old)

	mnt := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sshfs", "-p", strconv.Itoa(f.port),
		"-o", "password_stdin,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,PreferredAuthentications=password,PubkeyAuthentication=no,Ciphers=aes128-gcm@openssh.com",
		"alice@127.0.0.1:/docs", mnt)
	cmd.Stdin = strings.NewReader(alicePW + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		if strings.Contains(string(out), "fuse: device not found") || strings.Contains(string(out), "Operation not permitted") {
			t.Skipf("cannot mount FUSE here: %s", out)
		}
		t.Fatalf("sshfs: %v\n%s", err, out)
	}
	mounted := true
	unmount := func() {
		if mounted {
			if out, err := exec.Command("fusermount3", "-u", mnt).CombinedOutput(); err != nil {
				t.Errorf("fusermount3 -u: %v\n%s", err, out)
				exec.Command("fusermount3", "-u", "-z", mnt).Run()
			}
			mounted = false
		}
	}
	defer unmount()

	start := time.Now()
	if out, err := exec.CommandContext(ctx, "cp", "-a", src, mnt+"/").CombinedOutput(); err != nil {
		t.Fatalf("cp -a into the mount: %v\n%s", err, out)
	}
	t.Logf("cp -a of %d files: %v", files, time.Since(start).Round(time.Millisecond))
	// (sshfs builds with contain_symlinks refuse to read back targets
	// that are absolute or hold "..": uplink is stored, see below, but
	// not read through the mount.)
	if target, err := os.Readlink(filepath.Join(mnt, "net", "link")); err != nil || target != "rpc/server.go" {
		t.Errorf("readlink through sshfs = %q, %v", target, err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "net", "link")); err != nil || !strings.Contains(string(b), "package rpc") {
		t.Errorf("reading a relative link inside the share through sshfs: %v", err)
	}
	unmount()
	if d := diffTrees(dumpShare(t, f.share("docs"), "/net"), dumpDir(t, src), true); d != "" {
		t.Fatalf("share differs from the tree copied in with cp -a:\n%s", d)
	}
}
