package blob

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseS3URL(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_ENDPOINT_URL", "http://env.example:9000")
	t.Setenv("AWS_REGION", "eu-west-3")
	for _, c := range []struct {
		url, bucket, prefix, endpoint, region string
		pathStyle                             bool
		err                                   string
	}{
		{url: "s3://ciphertexts", bucket: "ciphertexts", endpoint: "http://env.example:9000", region: "eu-west-3"},
		{url: "s3://b/keyholder/prod/?endpoint=https://s3.example&region=us-east-2&path-style=true",
			bucket: "b", prefix: "keyholder/prod", endpoint: "https://s3.example", region: "us-east-2", pathStyle: true},
		{url: "s3://b/p?path-style=maybe", err: "path-style"},
		{url: "s3://b/p?endpont=http://x", err: `unknown S3 URL parameter "endpont"`},
		{url: "s3://AKIA:secret@b/p", err: "not in the URL"},
		{url: "s3:///p", err: "not an s3://bucket/prefix URL"},
		{url: "https://b/p", err: "not an s3://bucket/prefix URL"},
	} {
		bucket, prefix, o, err := ParseS3URL(c.url)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want one saying %q", c.url, err, c.err)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("%s: the error repeats the secret: %v", c.url, err)
			}
			continue
		}
		if err != nil || bucket != c.bucket || prefix != c.prefix || o.Endpoint != c.endpoint || o.Region != c.region || o.PathStyle != c.pathStyle {
			t.Errorf("%s: %q %q %+v %v", c.url, bucket, prefix, o, err)
		}
	}
}

// TestOpen: the --blob setting picks the driver; a bad one says what is
// accepted.
func TestOpen(t *testing.T) {
	dir := t.TempDir()
	for _, spec := range []string{"", filepath.Join(dir, "elsewhere"), "file://" + filepath.Join(dir, "url")} {
		s, err := Open(context.Background(), spec, filepath.Join(dir, "default"), 1<<30)
		if err != nil {
			t.Fatalf("%q: %v", spec, err)
		}
		if _, ok := s.(*FS); !ok {
			t.Fatalf("%q: %T, want a directory store", spec, s)
		}
	}
	for spec, want := range map[string]string{
		"gs://bucket":                "a directory or an s3:// URL",
		"s3://b?region=x&bogus=1":    "unknown S3 URL parameter",
		"s3://b?endpoint=ftp://host": "not an http:// or https:// URL",
		"file://host/x":              "file:///path",
	} {
		if _, err := Open(context.Background(), spec, dir, 1<<30); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error saying %q", spec, err, want)
		}
	}
}
