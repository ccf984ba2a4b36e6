package target

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		url  string
		want Location
		err  string
	}{
		{url: "s3://s3.example.com/bucket", want: Location{Scheme: "s3", Host: "s3.example.com", Bucket: "bucket"}},
		{url: "s3://127.0.0.1:7070/b/office/box1/", want: Location{Scheme: "s3", Host: "127.0.0.1:7070", Bucket: "b", Path: "office/box1"}},
		{url: "sftp://backup@dc.example.com/srv/arkbox", want: Location{Scheme: "sftp", Host: "dc.example.com:22", User: "backup", Path: "/srv/arkbox"}},
		{url: "sftp://u@[::1]:2222/x", want: Location{Scheme: "sftp", Host: "[::1]:2222", User: "u", Path: "/x"}},
		{url: "file:///mnt/seed", want: Location{Scheme: "file", Path: "/mnt/seed"}},
		{url: "file:///mnt/seed/../seed2", want: Location{Scheme: "file", Path: "/mnt/seed2"}},
		{url: "s3://key:secret@host/b", err: "password"},
		{url: "s3://key@host/b", err: "credentials"},
		{url: "s3://host", err: "no bucket"},
		{url: "s3://host/b?secret=x", err: "query"},
		{url: "sftp://host/path", err: "no user"},
		{url: "sftp://u:pw@host/path", err: "password"},
		{url: "file://relative/path", err: "absolute"},
		{url: "ftp://host/x", err: "unknown scheme"},
		{url: "/just/a/folder", err: "not a URL"},
	}
	for _, c := range cases {
		got, err := Parse(c.url)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("Parse(%q): error %v, want one mentioning %q", c.url, err, c.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") && strings.Contains(c.url, ":secret@") {
				t.Errorf("Parse(%q): the error repeats the password: %v", c.url, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", c.url, got, err, c.want)
		}
	}
}

func TestTargetValidate(t *testing.T) {
	ok := Target{Name: "offsite", Spec: Spec{URL: "s3://h/b"}, Parallel: 4, BWLimit: "2MB/s Mon-Fri 08:00-18:00", Grace: "72h"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		field string
		mod   func(*Target)
	}{
		{"name", func(t *Target) { t.Name = "../x" }},
		{"url", func(t *Target) { t.URL = "http://x" }},
		{"parallel", func(t *Target) { t.Parallel = 11 }},
		{"bwlimit", func(t *Target) { t.BWLimit = "fast" }},
		{"grace", func(t *Target) { t.Grace = "a week" }},
	} {
		x := ok
		bad.mod(&x)
		if err := x.Validate(); err == nil || !strings.Contains(err.Error(), bad.field) {
			t.Errorf("%s: %v", bad.field, err)
		}
	}
}
