// Package s3test gives tests a fresh bucket on a real S3 server: the one
// KEYHOLDER_TEST_S3 names, as http://ACCESS_KEY:SECRET_KEY@host:port
// (.ci/run starts versitygw and sets it). Tests skip without it, except
// under CI (CI=true), where they fail.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/keyholder/keyholder/internal/blob"
)

// Env is the environment variable naming the test S3 server.
const Env = "KEYHOLDER_TEST_S3"

// Server is the test S3 server: its endpoint and credentials.
type Server struct {
	Endpoint          string // http://host:port
	AccessKey, Secret string
}

// Find returns the test S3 server, skipping the test (failing it under
// CI) when there is none.
func Find(t testing.TB) Server {
	t.Helper()
	raw := os.Getenv(Env)
	if raw == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set under CI: .ci/run starts versitygw and sets it", Env)
		}
		t.Skipf("%s is not set (http://ACCESS:SECRET@host:port of an S3 server, e.g. versitygw as .ci/run starts it)", Env)
	}
	u, err := url.Parse(raw)
	if err != nil || u.User == nil || u.Host == "" {
		t.Fatalf("%s must be http://ACCESS:SECRET@host:port", Env)
	}
	secret, _ := u.User.Password()
	return Server{Endpoint: u.Scheme + "://" + u.Host, AccessKey: u.User.Username(), Secret: secret}
}

// Options returns S3 store options for the server, with static
// credentials.
func (s Server) Options() blob.S3Options {
	return blob.S3Options{Endpoint: s.Endpoint, PathStyle: true, Region: "us-east-1",
		Creds: credentials.NewStaticV4(s.AccessKey, s.Secret, "")}
}

// Client returns a client of the server.
func (s Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	u, _ := url.Parse(s.Endpoint)
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.Secret, ""),
		Secure: u.Scheme == "https", Region: "us-east-1", BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Bucket creates a fresh bucket, emptied and removed when the test ends,
// and returns its name with the server.
func Bucket(t testing.TB) (Server, string) {
	t.Helper()
	s := Find(t)
	c := s.Client(t)
	var r [8]byte
	rand.Read(r[:])
	name := "kh-test-" + hex.EncodeToString(r[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatalf("creating bucket %s on %s: %v", name, s.Endpoint, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for u := range c.ListIncompleteUploads(ctx, name, "", true) {
			if u.Err == nil {
				c.RemoveIncompleteUpload(ctx, name, u.Key)
			}
		}
		for o := range c.ListObjects(ctx, name, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err == nil {
				c.RemoveObject(ctx, name, o.Key, minio.RemoveObjectOptions{})
			}
		}
		if err := c.RemoveBucket(ctx, name); err != nil {
			t.Logf("removing bucket %s: %v", name, err)
		}
	})
	return s, name
}

// Store opens an S3 store on a fresh bucket under prefix, with o's
// part size and parallelism if set.
func Store(t testing.TB, prefix string, o blob.S3Options) *blob.S3 {
	t.Helper()
	srv, bucket := Bucket(t)
	so := srv.Options()
	so.PartSize, so.Parallel = o.PartSize, o.Parallel
	s, err := blob.NewS3(context.Background(), bucket, prefix, so)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
