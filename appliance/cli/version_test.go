package cli

import (
	"bytes"
	"testing"
)

// TestVersionBuild: `arkbox version` names the build when the image set one.
func TestVersionBuild(t *testing.T) {
	defer func(b string) { Build = b }(Build)
	for _, tc := range []struct{ build, want string }{
		{"", "arkbox 0.1\n"},
		{"20261122T084400Z-870903c", "arkbox 0.1 (build 20261122T084400Z-870903c)\n"},
	} {
		Build = tc.build
		var out bytes.Buffer
		if code := Main([]string{"version"}, nil, &out, &out); code != 0 || out.String() != tc.want {
			t.Errorf("build %q: exit %d, %q; want %q", tc.build, code, out.String(), tc.want)
		}
	}
}
