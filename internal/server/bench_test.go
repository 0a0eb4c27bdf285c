package server

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// TestUploadThroughput measures one large upload through the real HTTP
// stack when KEYHOLDER_BENCH_UPLOAD_MB is set (skipped otherwise).
func TestUploadThroughput(t *testing.T) {
	mb, _ := strconv.Atoi(os.Getenv("KEYHOLDER_BENCH_UPLOAD_MB"))
	if mb == 0 {
		t.Skip("set KEYHOLDER_BENCH_UPLOAD_MB")
	}
	e := newEnv(t, sqlite(), func(c *Config) { c.MaxRecordSize = int64(mb+16) << 20 })
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	u := e.prepare(lab, dev.user, make([]byte, mb<<20), envelope.Modern)
	ct, body := u.multipart()
	req, _ := http.NewRequest("POST", e.ts.URL+api.Path(api.PathUserRecords, dev.user), bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+lab.token)
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	if resp.StatusCode != 201 {
		t.Fatal(resp.StatusCode)
	}
	t.Logf("%d MiB in %s: %.0f MB/s", mb, d, float64(len(body))/d.Seconds()/1e6)
}
