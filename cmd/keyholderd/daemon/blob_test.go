package daemon

import (
	"net/http"
	"strings"
	"testing"

	"github.com/keyholder/keyholder/internal/blob/s3test"
)

// TestServeBlobS3: `serve --blob s3://…` takes its credentials from the
// AWS environment variables and is ready on an existing bucket; a missing
// bucket or wrong credentials fail the start with a message that names
// the bucket and never the secret.
func TestServeBlobS3(t *testing.T) {
	srv, bucket := s3test.Bucket(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.Secret)
	t.Setenv("KEYHOLDER_ADMIN_TOKEN", "blob-test-admin-token")
	url := func(b string) string {
		return "s3://" + b + "/records?endpoint=" + srv.Endpoint + "&region=us-east-1&path-style=true"
	}
	addr, _, stop := startServe(t, "--blob", url(bucket))
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz on S3: %v %v", resp, err)
	}
	resp.Body.Close()
	stop()

	_, _, err = runCmd(t, "serve", "--listen", freeAddr(t), "--data-dir", t.TempDir(), "--log-level", "error",
		"--blob", url(bucket+"-missing"))
	if err == nil || !strings.Contains(err.Error(), bucket+"-missing does not exist") {
		t.Fatalf("serve on a missing bucket: %v", err)
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
	_, _, err = runCmd(t, "serve", "--listen", freeAddr(t), "--data-dir", t.TempDir(), "--log-level", "error",
		"--blob", url(bucket))
	if err == nil || strings.Contains(err.Error(), "wrong-secret-value") {
		t.Fatalf("serve with a wrong secret: %v", err)
	}
	t.Logf("wrong secret: %v", err)
}

// TestInlineMaxBound: an --inline-max above the bound is refused at start,
// saying why, before anything is opened.
func TestInlineMaxBound(t *testing.T) {
	_, _, err := runCmd(t, "serve", "--listen", freeAddr(t), "--data-dir", t.TempDir(), "--log-level", "error",
		"--inline-max", "1073741824")
	if err == nil || !strings.Contains(err.Error(), "--inline-max: at most 16777216 bytes") {
		t.Fatalf("serve with --inline-max 1 GiB: %v", err)
	}
}
