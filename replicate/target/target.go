// Package target turns a replication URL into an object store:
//
//	s3://HOST[:PORT]/BUCKET[/PREFIX]   an S3-compatible bucket
//	sftp://USER@HOST[:PORT]/PATH       a folder on an SFTP server
//	file:///PATH                       a folder (seed disk, USB disk, NAS mount)
//
// Credentials never travel in the URL: they come from Spec fields (files)
// or the environment (ARKBOX_S3_ACCESS_KEY, ARKBOX_S3_SECRET_KEY,
// ARKBOX_SFTP_PASSWORD).
package target

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path"
	"strings"

	"github.com/arkbox/arkbox/replicate/s3store"
	"github.com/arkbox/arkbox/replicate/sftpstore"
	"github.com/arkbox/arkbox/storage/objstore"
)

// Spec is a target URL and how to reach it. It is stored (without secret
// values) in the repository's replication configuration.
type Spec struct {
	URL string `json:"url"`
	// S3
	AccessKey     string `json:"access_key,omitempty"`
	SecretKeyFile string `json:"secret_key_file,omitempty"`
	Region        string `json:"region,omitempty"`
	VirtualHost   bool   `json:"virtual_host,omitempty"` // BUCKET.HOST addressing instead of HOST/BUCKET
	CAFile        string `json:"ca_file,omitempty"`
	Insecure      bool   `json:"insecure,omitempty"` // plain HTTP
	// SFTP
	KeyFile      string `json:"key_file,omitempty"`
	PasswordFile string `json:"password_file,omitempty"`
	KnownHosts   string `json:"known_hosts,omitempty"`
}

// Location is a parsed target URL.
type Location struct {
	Scheme string // s3, sftp, file
	Host   string // HOST:PORT (s3, sftp)
	User   string // sftp
	Bucket string // s3
	Path   string // s3: prefix; sftp and file: folder
}

// Parse checks a target URL.
func Parse(raw string) (Location, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Location{}, fmt.Errorf("target %q: %w", raw, err)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Location{}, fmt.Errorf("target %q: query strings are not allowed (give options as flags)", raw)
	}
	if _, hasPw := u.User.Password(); hasPw {
		return Location{}, fmt.Errorf("target %q: never put a password in the URL; use a password or key file", redact(u))
	}
	switch u.Scheme {
	case "s3":
		if u.User != nil {
			return Location{}, fmt.Errorf("target %q: credentials do not go in the URL; use --access-key and --secret-key-file", redact(u))
		}
		if u.Host == "" {
			return Location{}, fmt.Errorf("target %q: want s3://HOST[:PORT]/BUCKET[/PREFIX]", raw)
		}
		p := strings.Trim(u.Path, "/")
		bucket, prefix, _ := strings.Cut(p, "/")
		if bucket == "" {
			return Location{}, fmt.Errorf("target %q: no bucket; want s3://HOST[:PORT]/BUCKET[/PREFIX]", raw)
		}
		return Location{Scheme: "s3", Host: u.Host, Bucket: bucket, Path: prefix}, nil
	case "sftp":
		if u.User == nil || u.User.Username() == "" {
			return Location{}, fmt.Errorf("target %q: no user; want sftp://USER@HOST[:PORT]/PATH", raw)
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "22")
		}
		if u.Hostname() == "" {
			return Location{}, fmt.Errorf("target %q: no host", raw)
		}
		return Location{Scheme: "sftp", Host: host, User: u.User.Username(), Path: u.Path}, nil
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return Location{}, fmt.Errorf("target %q: want file:///PATH (an absolute path)", raw)
		}
		if !path.IsAbs(u.Path) {
			return Location{}, fmt.Errorf("target %q: want file:///PATH (an absolute path)", raw)
		}
		return Location{Scheme: "file", Path: path.Clean(u.Path)}, nil
	case "":
		return Location{}, fmt.Errorf("target %q: not a URL; want s3://…, sftp://… or file:///…", raw)
	}
	return Location{}, fmt.Errorf("target %q: unknown scheme %q; want s3, sftp or file", raw, u.Scheme)
}

// IsURL reports whether s looks like a target URL rather than a folder.
func IsURL(s string) bool {
	for _, p := range []string{"s3://", "sftp://", "file://"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// Options tune Open.
type Options struct {
	ReadOnly bool
	// Create makes the bucket or folder when it does not exist.
	Create bool
	// Dial, if set, makes the network connections (bandwidth limits,
	// fault-injecting tests).
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger *slog.Logger
	// Parts: multipart threshold and part size for S3 (0 = defaults).
	MultipartThreshold, PartSize int64
	// Conns is the number of SSH connections to an SFTP target.
	Conns int
}

// Open opens the store spec names.
func Open(ctx context.Context, spec Spec, opt Options) (objstore.Store, error) {
	loc, err := Parse(spec.URL)
	if err != nil {
		return nil, err
	}
	switch loc.Scheme {
	case "s3":
		access, secret, err := s3Credentials(spec)
		if err != nil {
			return nil, err
		}
		return s3store.Open(ctx, s3store.Options{
			Endpoint: loc.Host, Bucket: loc.Bucket, Prefix: loc.Path, Region: spec.Region,
			AccessKey: access, SecretKey: secret, Insecure: spec.Insecure, PathStyle: !spec.VirtualHost,
			CAFile: spec.CAFile, CreateBucket: opt.Create, ReadOnly: opt.ReadOnly, Dial: opt.Dial, Logger: opt.Logger,
			MultipartThreshold: opt.MultipartThreshold, PartSize: opt.PartSize,
		})
	case "sftp":
		pw := os.Getenv("ARKBOX_SFTP_PASSWORD")
		if spec.PasswordFile != "" {
			b, err := os.ReadFile(spec.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("target %s: read password file: %w", spec.URL, err)
			}
			pw = strings.TrimRight(string(b), "\r\n")
		}
		if spec.KnownHosts == "" {
			return nil, fmt.Errorf("target %s: no known_hosts file to pin the server's host key", spec.URL)
		}
		return sftpstore.Open(ctx, sftpstore.Options{
			Addr: loc.Host, User: loc.User, Path: loc.Path, Password: pw, KeyFile: spec.KeyFile,
			KnownHosts: spec.KnownHosts, Create: opt.Create, ReadOnly: opt.ReadOnly, Dial: opt.Dial, Logger: opt.Logger, Conns: opt.Conns,
		})
	case "file":
		return objstore.OpenDir(loc.Path, objstore.DirOptions{Create: opt.Create, ReadOnly: opt.ReadOnly})
	}
	return nil, fmt.Errorf("target %s: unknown scheme", spec.URL)
}

func s3Credentials(spec Spec) (string, string, error) {
	access := spec.AccessKey
	if access == "" {
		access = os.Getenv("ARKBOX_S3_ACCESS_KEY")
	}
	secret := os.Getenv("ARKBOX_S3_SECRET_KEY")
	if spec.SecretKeyFile != "" {
		b, err := os.ReadFile(spec.SecretKeyFile)
		if err != nil {
			return "", "", fmt.Errorf("target %s: read secret key file: %w", spec.URL, err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if access == "" || secret == "" {
		return "", "", errors.New("target " + spec.URL + ": no S3 credentials: give --access-key and --secret-key-file, or set ARKBOX_S3_ACCESS_KEY and ARKBOX_S3_SECRET_KEY")
	}
	return access, secret, nil
}
