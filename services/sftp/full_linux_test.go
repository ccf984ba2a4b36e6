package sftp

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/sys/unix"
)

// TestFullStaging: an upload to a share whose staging disk is full gets
// SSH_FX_FAILURE with a message saying the appliance is full, the server
// logs it as an error, and once space is freed the same upload succeeds.
func TestFullStaging(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	staging := filepath.Join(t.TempDir(), "staging")
	if err := os.Mkdir(staging, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", staging, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(staging, unix.MNT_DETACH) })
	f := newFixture(t, fixtureOptions{staging: staging})
	c := f.client(f.alice)

	// Fill the disk, leaving nothing for staging files.
	fill := filepath.Join(staging, "ballast")
	bf, err := os.Create(fill)
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = bf.Write(make([]byte, 64<<10))
	}
	bf.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}

	data := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{9}).Read(data)
	upload := func() error {
		w, err := c.Create("/docs/upload.bin")
		if err != nil {
			return err
		}
		_, err = io.Copy(w, bytes.NewReader(data))
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		return err
	}
	err = upload()
	var se *sftp.StatusError
	if !errors.As(err, &se) || se.FxCode() != sftp.ErrSSHFxFailure {
		t.Fatalf("upload to a full disk: %v; want SSH_FX_FAILURE", err)
	}
	if msg := se.Error(); !strings.Contains(msg, "no space left on device (the appliance's storage is full)") || !strings.Contains(msg, "/docs/upload.bin") {
		t.Fatalf("status message %q does not say the appliance is full", msg)
	}
	if logs := f.logs.String(); !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "no space left on device") {
		t.Fatalf("the server did not log the full disk as an error:\n%s", logs)
	}

	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	if err := upload(); err != nil {
		t.Fatalf("upload after space was freed: %v", err)
	}
	got, err := f.shareFile("docs", "upload.bin")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("uploaded file: %d bytes, %v", len(got), err)
	}
}
