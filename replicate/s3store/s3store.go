// Package s3store is an objstore.Store in an S3-compatible bucket (AWS,
// MinIO, Ceph RGW, Garage, Backblaze B2, versitygw), the usual offsite
// replication target.
//
// Object (kind, id) is the key PREFIX/KIND/ID[0:2]/ID, the same layout as a
// directory store, so a copy made with any S3 tool is a valid repository.
// Every upload carries its SHA-256 (which is the object's name) as the
// signed payload hash, so the server rejects a body damaged on the way.
// Objects above the multipart threshold are uploaded in parts; an upload
// interrupted by a crash or a cut link is resumed: parts the server already
// holds with the right MD5 are not sent again.
package s3store

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/arkbox/arkbox/storage/objstore"
)

// Options configure a bucket.
type Options struct {
	Endpoint  string // HOST[:PORT]
	Bucket    string
	Prefix    string // folder inside the bucket, without leading or trailing slash
	Region    string
	AccessKey string
	SecretKey string
	// Insecure uses plain HTTP (a LAN or test server).
	Insecure bool
	// PathStyle addresses the bucket as ENDPOINT/BUCKET (else
	// BUCKET.ENDPOINT when the server supports it).
	PathStyle bool
	// CAFile is a PEM file of certificate authorities to trust instead of
	// the system's (a datacenter's own CA).
	CAFile string
	// CreateBucket makes the bucket when it does not exist.
	CreateBucket bool
	// ReadOnly refuses Put and Delete.
	ReadOnly bool
	// MultipartThreshold: objects larger than this go multipart
	// (default 32 MiB). PartSize is the part size (default 16 MiB,
	// at least 5 MiB as S3 requires).
	MultipartThreshold int64
	PartSize           int64
	// Timeout bounds one request without progress (default 2 minutes).
	Timeout time.Duration
	// Dial, if set, makes the TCP connections (bandwidth limits, tests).
	Dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	Logger *slog.Logger
}

// Store is a bucket (and prefix) holding a repository's objects.
type Store struct {
	core   *minio.Core
	bucket string
	prefix string
	opt    Options
	log    *slog.Logger
}

// Open connects to the bucket and checks that it exists (or creates it).
func Open(ctx context.Context, opt Options) (*Store, error) {
	if opt.Endpoint == "" || opt.Bucket == "" {
		return nil, errors.New("s3: endpoint and bucket are required")
	}
	if opt.MultipartThreshold <= 0 {
		opt.MultipartThreshold = 32 << 20
	}
	if opt.PartSize <= 0 {
		opt.PartSize = 16 << 20
	}
	if opt.PartSize < 5<<20 {
		opt.PartSize = 5 << 20
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 2 * time.Minute
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tr, err := transport(opt)
	if err != nil {
		return nil, err
	}
	lookup := minio.BucketLookupAuto
	if opt.PathStyle {
		lookup = minio.BucketLookupPath
	}
	core, err := minio.NewCore(opt.Endpoint, &minio.Options{
		Creds:        credentials.NewStaticV4(opt.AccessKey, opt.SecretKey, ""),
		Secure:       !opt.Insecure,
		Region:       opt.Region,
		BucketLookup: lookup,
		Transport:    tr,
		MaxRetries:   1, // the sync retries with its own backoff
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %s: %w", opt.Endpoint, err)
	}
	s := &Store{core: core, bucket: opt.Bucket, prefix: strings.Trim(opt.Prefix, "/"), opt: opt, log: log}
	ok, err := core.BucketExists(ctx, opt.Bucket)
	if err != nil {
		return nil, fmt.Errorf("s3: open bucket %s on %s: %w", opt.Bucket, opt.Endpoint, explain(err))
	}
	if !ok {
		if !opt.CreateBucket || opt.ReadOnly {
			return nil, fmt.Errorf("s3: bucket %s does not exist on %s (create it, or let arkbox create it)", opt.Bucket, opt.Endpoint)
		}
		if err := core.MakeBucket(ctx, opt.Bucket, minio.MakeBucketOptions{Region: opt.Region}); err != nil {
			return nil, fmt.Errorf("s3: create bucket %s on %s: %w", opt.Bucket, opt.Endpoint, explain(err))
		}
	}
	return s, nil
}

func transport(opt Options) (*http.Transport, error) {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: opt.Timeout,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
	if opt.Dial != nil {
		tr.DialContext = opt.Dial
	}
	if opt.CAFile != "" {
		pem, err := os.ReadFile(opt.CAFile)
		if err != nil {
			return nil, fmt.Errorf("s3: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("s3: CA file %s holds no PEM certificate", opt.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return tr, nil
}

// explain turns an S3 error response into a message that says what to do.
func explain(err error) error {
	r := minio.ToErrorResponse(err)
	switch r.Code {
	case "InvalidAccessKeyId", "SignatureDoesNotMatch":
		return fmt.Errorf("%w (check the access key and the secret key)", err)
	case "AccessDenied":
		return fmt.Errorf("%w (the key has no permission on this bucket)", err)
	}
	return err
}

func (s *Store) key(kind objstore.Kind, id objstore.ID) string {
	h := id.String()
	return path.Join(s.prefix, string(kind), h[:2], h)
}

func (s *Store) kindPrefix(kind objstore.Kind) string {
	if s.prefix == "" {
		return string(kind) + "/"
	}
	return s.prefix + "/" + string(kind) + "/"
}

func checkKind(op string, kind objstore.Kind) error {
	if !kind.Valid() {
		return fmt.Errorf("s3: %s: unknown kind %q", op, kind)
	}
	return nil
}

func isNotFound(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.Code == "NoSuchKey" || r.Code == "NotFound" || r.StatusCode == http.StatusNotFound
}

func (s *Store) wrap(op string, kind objstore.Kind, id objstore.ID, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("s3: %s %s/%s: %w", op, kind, id, objstore.ErrNotFound)
	}
	return fmt.Errorf("s3: %s %s/%s: %w", op, kind, id, explain(err))
}

// Put implements objstore.Store.
func (s *Store) Put(ctx context.Context, kind objstore.Kind, id objstore.ID, data []byte) error {
	if err := checkKind("put", kind); err != nil {
		return err
	}
	if s.opt.ReadOnly {
		return fmt.Errorf("s3: put %s/%s: %w", kind, id, objstore.ErrReadOnly)
	}
	if objstore.Sum(data) != id {
		return fmt.Errorf("s3: put %s/%s: %w", kind, id, objstore.ErrIDMismatch)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	key := s.key(kind, id)
	if int64(len(data)) > s.opt.MultipartThreshold {
		if err := s.putMultipart(ctx, key, data); err != nil {
			return fmt.Errorf("s3: put %s/%s: %w", kind, id, explain(err))
		}
	} else {
		sum := md5.Sum(data)
		_, err := s.core.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)),
			base64.StdEncoding.EncodeToString(sum[:]), id.String(),
			minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true})
		if err != nil {
			return fmt.Errorf("s3: put %s/%s: %w", kind, id, explain(err))
		}
	}
	return nil
}

// putMultipart uploads data in parts, resuming an unfinished upload of the
// same key: parts the server holds with the right size and MD5 are kept.
func (s *Store) putMultipart(ctx context.Context, key string, data []byte) error {
	uploadID, have, err := s.findUpload(ctx, key)
	if err != nil {
		return err
	}
	if uploadID == "" {
		uploadID, err = s.core.NewMultipartUpload(ctx, s.bucket, key, minio.PutObjectOptions{ContentType: "application/octet-stream"})
		if err != nil {
			return fmt.Errorf("start multipart upload: %w", err)
		}
	}
	var parts []minio.CompletePart
	resumed := 0
	for n, off := 1, int64(0); off < int64(len(data)); n, off = n+1, off+s.opt.PartSize {
		end := min(off+s.opt.PartSize, int64(len(data)))
		part := data[off:end]
		m := md5.Sum(part)
		etag := hex.EncodeToString(m[:])
		if p, ok := have[n]; ok && p.Size == int64(len(part)) && strings.Trim(p.ETag, `"`) == etag {
			parts = append(parts, minio.CompletePart{PartNumber: n, ETag: p.ETag})
			resumed++
			continue
		}
		sh := sha256.Sum256(part)
		op, err := s.core.PutObjectPart(ctx, s.bucket, key, uploadID, n, bytes.NewReader(part), int64(len(part)),
			minio.PutObjectPartOptions{Md5Base64: base64.StdEncoding.EncodeToString(m[:]), Sha256Hex: hex.EncodeToString(sh[:])})
		if err != nil {
			return fmt.Errorf("upload part %d: %w", n, err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: n, ETag: op.ETag})
	}
	if resumed > 0 {
		s.log.Info("s3: resumed multipart upload", "key", key, "parts_kept", resumed, "parts", len(parts))
	}
	if _, err := s.core.CompleteMultipartUpload(ctx, s.bucket, key, uploadID, parts, minio.PutObjectOptions{}); err != nil {
		return fmt.Errorf("complete multipart upload: %w", err)
	}
	return nil
}

// findUpload returns an unfinished multipart upload of key and its parts.
func (s *Store) findUpload(ctx context.Context, key string) (string, map[int]minio.ObjectPart, error) {
	res, err := s.core.ListMultipartUploads(ctx, s.bucket, key, "", "", "", 100)
	if err != nil {
		if r := minio.ToErrorResponse(err); r.Code == "NotImplemented" || r.StatusCode == http.StatusNotImplemented {
			return "", nil, nil // this server does not list uploads: start a new one
		}
		return "", nil, fmt.Errorf("list unfinished uploads: %w", err)
	}
	var id string
	var started time.Time
	for _, u := range res.Uploads {
		if u.Key == key && (id == "" || u.Initiated.After(started)) {
			id, started = u.UploadID, u.Initiated
		}
	}
	if id == "" {
		return "", nil, nil
	}
	have := map[int]minio.ObjectPart{}
	marker := 0
	for {
		lp, err := s.core.ListObjectParts(ctx, s.bucket, key, id, marker, 1000)
		if err != nil {
			if r := minio.ToErrorResponse(err); r.Code == "NoSuchUpload" {
				return "", nil, nil // the upload vanished: start again
			}
			return "", nil, fmt.Errorf("list uploaded parts: %w", err)
		}
		for _, p := range lp.ObjectParts {
			have[p.PartNumber] = p
		}
		if !lp.IsTruncated {
			break
		}
		marker = lp.NextPartNumberMarker
	}
	return id, have, nil
}

// Get implements objstore.Store: the object, verified against its name.
func (s *Store) Get(ctx context.Context, kind objstore.Kind, id objstore.ID) ([]byte, error) {
	if err := checkKind("get", kind); err != nil {
		return nil, err
	}
	rc, info, _, err := s.core.GetObject(ctx, s.bucket, s.key(kind, id), minio.GetObjectOptions{})
	if err != nil {
		return nil, s.wrap("get", kind, id, err)
	}
	defer rc.Close()
	buf := bytes.NewBuffer(make([]byte, 0, max(info.Size, 0)))
	if _, err := io.Copy(buf, rc); err != nil {
		return nil, s.wrap("get", kind, id, err)
	}
	data := buf.Bytes()
	if objstore.Sum(data) != id {
		return nil, fmt.Errorf("s3: get %s/%s: %d bytes do not match the name: %w", kind, id, len(data), objstore.ErrCorrupt)
	}
	return data, nil
}

// GetRange implements objstore.Store.
func (s *Store) GetRange(ctx context.Context, kind objstore.Kind, id objstore.ID, off, n int64) ([]byte, error) {
	if err := checkKind("get range", kind); err != nil {
		return nil, err
	}
	if off < 0 || n < 0 {
		return nil, fmt.Errorf("s3: get range %s/%s [%d,+%d): %w", kind, id, off, n, objstore.ErrRange)
	}
	if n == 0 {
		info, err := s.Stat(ctx, kind, id)
		if err != nil {
			return nil, err
		}
		if off > info.Size {
			return nil, fmt.Errorf("s3: get range %s/%s [%d,+0) of %d bytes: %w", kind, id, off, info.Size, objstore.ErrRange)
		}
		return []byte{}, nil
	}
	var o minio.GetObjectOptions
	if err := o.SetRange(off, off+n-1); err != nil {
		return nil, fmt.Errorf("s3: get range %s/%s: %w", kind, id, err)
	}
	rc, info, _, err := s.core.GetObject(ctx, s.bucket, s.key(kind, id), o)
	if err != nil {
		if r := minio.ToErrorResponse(err); r.Code == "InvalidRange" || r.StatusCode == http.StatusRequestedRangeNotSatisfiable {
			return nil, fmt.Errorf("s3: get range %s/%s [%d,+%d): %w", kind, id, off, n, objstore.ErrRange)
		}
		return nil, s.wrap("get range", kind, id, err)
	}
	defer rc.Close()
	buf := make([]byte, n)
	got, err := io.ReadFull(rc, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, s.wrap("get range", kind, id, err)
	}
	if int64(got) != n || info.Size < n {
		return nil, fmt.Errorf("s3: get range %s/%s [%d,+%d): %w", kind, id, off, n, objstore.ErrRange)
	}
	return buf, nil
}

// Stat implements objstore.Store.
func (s *Store) Stat(ctx context.Context, kind objstore.Kind, id objstore.ID) (objstore.Info, error) {
	if err := checkKind("stat", kind); err != nil {
		return objstore.Info{}, err
	}
	oi, err := s.core.StatObject(ctx, s.bucket, s.key(kind, id), minio.StatObjectOptions{})
	if err != nil {
		return objstore.Info{}, s.wrap("stat", kind, id, err)
	}
	return objstore.Info{Kind: kind, ID: id, Size: oi.Size}, nil
}

// List implements objstore.Store.
func (s *Store) List(ctx context.Context, kind objstore.Kind, fn func(objstore.Info) error) error {
	if err := checkKind("list", kind); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := s.core.Client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.kindPrefix(kind), Recursive: true})
	var stop error
	for oi := range ch {
		if stop != nil {
			continue // drain after cancel
		}
		if oi.Err != nil {
			stop = fmt.Errorf("s3: list %s: %w", kind, explain(oi.Err))
			cancel()
			continue
		}
		id, err := objstore.ParseID(path.Base(oi.Key))
		if err != nil || path.Base(path.Dir(oi.Key)) != path.Base(oi.Key)[:2] {
			continue // not an object of the repository
		}
		if err := fn(objstore.Info{Kind: kind, ID: id, Size: oi.Size}); err != nil {
			stop = err
			cancel()
		}
	}
	if stop == nil {
		stop = ctx.Err()
	}
	return stop
}

// Delete implements objstore.Store.
func (s *Store) Delete(ctx context.Context, kind objstore.Kind, id objstore.ID) error {
	if err := checkKind("delete", kind); err != nil {
		return err
	}
	if s.opt.ReadOnly {
		return fmt.Errorf("s3: delete %s/%s: %w", kind, id, objstore.ErrReadOnly)
	}
	if _, err := s.Stat(ctx, kind, id); err != nil {
		return err
	}
	if err := s.core.RemoveObject(ctx, s.bucket, s.key(kind, id), minio.RemoveObjectOptions{}); err != nil {
		return s.wrap("delete", kind, id, err)
	}
	return nil
}

// Close implements objstore.Store.
func (s *Store) Close() error { return nil }
