package s3store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/arkbox/arkbox/internal/testpeer"
	"github.com/arkbox/arkbox/replicate/s3store"
	"github.com/arkbox/arkbox/storage/objstore"
	"github.com/arkbox/arkbox/storage/objstore/storetest"
)

func TestConformance(t *testing.T) {
	srv := testpeer.S3(t)
	n := 0
	for _, prefix := range []string{"", "office/box1"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) objstore.Store {
				n++
				s, err := s3store.Open(context.Background(), s3store.Options{
					Endpoint: srv.Endpoint, Bucket: "conf" + string(rune('a'+n%26)) + string(rune('a'+n/26)), Prefix: prefix,
					AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Insecure: true, PathStyle: true, CreateBucket: true,
					MultipartThreshold: 6 << 20, PartSize: 5 << 20,
				})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}, storetest.Options{})
		})
	}
}

// TLS with the datacenter's own certificate authority: trusted through
// CAFile, refused without it.
func TestCustomCA(t *testing.T) {
	srv, ca := testpeer.S3TLS(t)
	opt := s3store.Options{Endpoint: srv.Endpoint, Bucket: "tls", AccessKey: srv.AccessKey, SecretKey: srv.SecretKey,
		PathStyle: true, CreateBucket: true}
	if _, err := s3store.Open(context.Background(), opt); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an unknown CA was accepted: %v", err)
	}
	opt.CAFile = ca
	s, err := s3store.Open(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("over TLS")
	if err := s.Put(context.Background(), objstore.KindPack, objstore.Sum(data), data); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(context.Background(), objstore.KindPack, objstore.Sum(data)); err != nil || string(got) != string(data) {
		t.Fatalf("get over TLS: %q %v", got, err)
	}
}
