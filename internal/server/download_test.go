package server

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/keyholder/keyholder/pkg/api"
)

// TestDownloadErrorsAreProblems: the errors http.ServeContent writes
// itself (416 for a range outside the content, 412 for a failed If-Match)
// are problem documents like every other error; HEAD gives the headers of
// the download without a body.
func TestDownloadErrorsAreProblems(t *testing.T) {
	e := newEnv(t, sqlite(), func(c *Config) { c.TokenTTL = 48 * time.Hour })
	dev := e.newUser("alice")
	lab := e.newParty("lab")
	bank := e.newParty("bank")
	rec, _ := e.submit(lab, dev.user, []byte("some record bytes"))
	e.approve(dev, rec.ID)
	e.grantAccess(dev, bank, rec.ID, 600)
	path := api.Path(api.PathRecordContent, rec.ID)
	resp, full := e.do("GET", path, bank.token, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("download: %d", resp.StatusCode)
	}
	etag := resp.Header.Get("ETag")

	resp, data := e.do("GET", path, bank.token, nil, "Range", fmt.Sprintf("bytes=%d-", len(full)+100))
	e.wantProblem(resp, data, http.StatusRequestedRangeNotSatisfiable)
	if cr := resp.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes */%d", len(full)) {
		t.Fatalf("416 Content-Range %q", cr)
	}
	resp, data = e.do("GET", path, bank.token, nil, "If-Match", `"something-else"`)
	e.wantProblem(resp, data, http.StatusPreconditionFailed)
	// The matching ETag still works, and so does If-None-Match.
	resp, data = e.do("GET", path, bank.token, nil, "If-Match", etag)
	if resp.StatusCode != 200 || len(data) != len(full) {
		t.Fatalf("If-Match with the ETag: %d", resp.StatusCode)
	}
	resp, _ = e.do("GET", path, bank.token, nil, "If-None-Match", etag)
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d", resp.StatusCode)
	}

	// HEAD: same headers, no body.
	resp, data = e.do("HEAD", path, bank.token, nil)
	if resp.StatusCode != 200 || len(data) != 0 || resp.Header.Get("Content-Length") != strconv.Itoa(len(full)) ||
		resp.Header.Get("ETag") != etag || resp.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("HEAD: %d, %d body bytes, headers %v", resp.StatusCode, len(data), resp.Header)
	}
	for _, tok := range []string{lab.token, ""} {
		resp, data = e.do("HEAD", path, tok, nil)
		if resp.StatusCode/100 != 4 || len(data) != 0 || resp.Header.Get("Content-Type") != api.ContentTypeProblemJSON {
			t.Fatalf("HEAD without a grant: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), data)
		}
	}
}
