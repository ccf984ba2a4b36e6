// Package crashtest runs the test binary as a child process that works
// until it is killed with SIGKILL, for tests of what survives a crash.
//
// The child is the same test binary, started with no test to run and an
// environment variable its TestMain recognises; it prints a line for each
// piece of work it finished (acknowledged) and exits with status 3 when
// its work fails.
package crashtest

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// ChildFailed is the exit status of a child whose work failed.
const ChildFailed = 3

// Kill runs the test binary as a child with env added to its environment,
// passes each line the child prints to line (in the calling goroutine),
// kills the child with SIGKILL after d unless it ended before, and waits
// for it. A child that failed fails the test, with what it wrote to
// stderr.
func Kill(t testing.TB, env []string, d time.Duration, line func(string)) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	deadline := time.After(d)
read:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				break read
			}
			line(l)
		case <-deadline:
			cmd.Process.Signal(syscall.SIGKILL)
			for l := range lines {
				line(l)
			}
			break read
		}
	}
	err = cmd.Wait()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == ChildFailed {
		t.Fatalf("child failed: %s", stderr.String())
	}
}
