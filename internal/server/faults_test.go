package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"gorm.io/gorm"

	"github.com/keyholder/keyholder/internal/blob"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// logBuffer is a log destination tests can read while the server writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// logTo sends the server's log to a buffer.
func logTo(logs *logBuffer, mod func(*Config)) func(*Config) {
	return func(c *Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		if mod != nil {
			mod(c)
		}
	}
}

// fullDisk is a blob store on a filesystem with room bytes left: writes
// beyond them, and new files once there is none, fail with ENOSPC, as the
// kernel's do.
type fullDisk struct {
	*blob.FS
	room int64
}

func (f *fullDisk) Create() (blob.Temp, error) {
	if f.room <= 0 {
		return nil, &os.PathError{Op: "open", Path: filepath.Join(f.TempDir(), "upload-1"), Err: syscall.ENOSPC}
	}
	t, err := f.FS.Create()
	if err != nil {
		return nil, err
	}
	return &fullTemp{Temp: t, room: f.room}, nil
}

type fullTemp struct {
	blob.Temp
	room int64
}

func (t *fullTemp) Write(p []byte) (int, error) {
	if int64(len(p)) <= t.room {
		t.room -= int64(len(p))
		return t.Temp.Write(p)
	}
	n, _ := t.Temp.Write(p[:t.room])
	t.room = 0
	return n, &os.PathError{Op: "write", Path: t.Name(), Err: syscall.ENOSPC}
}

// TestFullDiskUpload: an upload that meets a full disk is a 507
// insufficient-storage, logged as an error, and stores nothing; the
// client is not told its upload was malformed. Before: 400 "the upload
// was interrupted or is malformed", and no log line.
func TestFullDiskUpload(t *testing.T) {
	for _, tc := range []struct {
		name string
		room int64
	}{{"mid-upload", 512 << 10}, {"no room for a temporary file", 0}} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logBuffer
			clk := &clock{}
			e := newEnvWrapped(t, storetest.Open(t, sqlite(), clk.now), clk, t.TempDir(), nil,
				func(fs *blob.FS) blob.Store { return &fullDisk{FS: fs, room: tc.room} }, logTo(&logs, nil))
			dev := e.newUser("alice")
			lab := e.newParty("lab")
			u := e.prepare(lab, dev.user, randBytes(2<<20), envelope.Compat)
			before := e.snap()
			resp, data := e.send(lab, dev.user, u)
			p := e.wantProblem(resp, data, 507)
			if p.Type != api.ProblemInsufficientStorage {
				t.Fatalf("problem type %s", p.Type)
			}
			e.unchanged(before)
			if !strings.Contains(logs.String(), `"level":"ERROR","msg":"insufficient storage`) || !strings.Contains(logs.String(), "no space left on device") {
				t.Fatalf("no error logged:\n%s", logs.String())
			}
		})
	}
}

// sqliteBusy is the error SQLite gives when another writer holds the
// database past the busy timeout (SQLITE_BUSY, code 5).
type sqliteBusy struct{}

func (sqliteBusy) Error() string { return "database is locked (5) (SQLITE_BUSY)" }
func (sqliteBusy) Code() int     { return 5 }

// TestDatabaseOutageSQLite: while every query fails as SQLite fails when
// the database stays locked (the fault injected into gorm), requests get
// 503 with Retry-After, not 500; the error is logged; /readyz is 503.
// Afterwards everything works again.
func TestDatabaseOutageSQLite(t *testing.T) {
	var logs logBuffer
	e := newEnv(t, sqlite(), logTo(&logs, nil))
	lab := e.newParty("lab")
	var down atomic.Bool
	inject := func(db *gorm.DB) {
		if down.Load() {
			db.AddError(sqliteBusy{})
		}
	}
	cb := e.st.DB(context.Background()).Callback()
	if err := cb.Query().Before("gorm:query").Register("test:outage", inject); err != nil {
		t.Fatal(err)
	}
	if err := cb.Row().Before("gorm:row").Register("test:outage", inject); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	e.checkOutage(lab, &logs)
	down.Store(false)
	e.call("GET", api.PathPartyRecords, lab.token, nil, 200, nil)
}

// checkOutage: during an outage, a party's request and /readyz are 503
// with Retry-After, and the error is logged.
func (e *env) checkOutage(p *party, logs *logBuffer) {
	e.t.Helper()
	for _, path := range []string{api.PathPartyRecords, api.PathReadyz} {
		tok := p.token
		if path == api.PathReadyz {
			tok = ""
		}
		resp, data := e.do("GET", path, tok, nil)
		if resp.StatusCode != 503 {
			e.t.Log(logs.String())
		}
		pr := e.wantProblem(resp, data, 503)
		if pr.Type != api.ProblemUnavailable || resp.Header.Get("Retry-After") == "" {
			e.t.Fatalf("%s: %s, Retry-After %q", path, data, resp.Header.Get("Retry-After"))
		}
	}
	if !strings.Contains(logs.String(), `"msg":"database unavailable"`) {
		e.t.Fatalf("outage not logged:\n%s", logs.String())
	}
}

// pgProxy forwards TCP connections to PostgreSQL until it is cut: then it
// closes every connection and refuses new ones, as a database host that
// went away does, until it is restored.
type pgProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func newPGProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{l: l, target: target, conns: map[net.Conn]bool{}}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			if !down {
				p.conns[c] = true
			}
			p.mu.Unlock()
			if down {
				c.Close()
				continue
			}
			go p.pipe(c)
		}
	}()
	t.Cleanup(func() { l.Close(); p.cut() })
	return p
}

func (p *pgProxy) pipe(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[s] = true
	p.mu.Unlock()
	go func() { io.Copy(s, c); s.Close() }()
	io.Copy(c, s)
	c.Close()
}

func (p *pgProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *pgProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}

// TestDatabaseOutagePostgres cuts the server's real PostgreSQL
// connections (a proxy between them closes them all and refuses new
// ones): requests get 503 with Retry-After instead of 500, the error is
// logged, /readyz is 503; once the database is back, requests work again.
func TestDatabaseOutagePostgres(t *testing.T) {
	dsn := os.Getenv("KEYHOLDER_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("KEYHOLDER_TEST_POSTGRES is not set")
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newPGProxy(t, u.Host)
	u.Host = proxy.l.Addr().String()
	var logs logBuffer
	e := newEnv(t, storetest.Backend{Name: "postgres", DSN: u.String()}, logTo(&logs, nil))
	t.Cleanup(proxy.restore) // runs before the store's cleanup drops its schema
	lab := e.newParty("lab")
	proxy.cut()
	e.checkOutage(lab, &logs)
	proxy.restore()
	e.call("GET", api.PathPartyRecords, lab.token, nil, 200, nil)
}

// TestReadyzChecksStorage: /readyz says ready only when the blob store
// can take an upload. Before, it pinged the database only and said 200
// on a full disk.
func TestReadyzChecksStorage(t *testing.T) {
	e := newEnv(t, sqlite(), nil)
	e.call("GET", api.PathReadyz, "", nil, 200, nil)

	full := newEnv(t, sqlite(), func(c *Config) { c.MinFreeSpace = 1 << 62 })
	resp, data := full.do("GET", api.PathReadyz, "", nil)
	if p := full.wantProblem(resp, data, 503); p.Type != api.ProblemUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("readyz on a full disk: %s", data)
	}

	if err := os.RemoveAll(e.blobs.TempDir()); err != nil {
		t.Fatal(err)
	}
	resp, data = e.do("GET", api.PathReadyz, "", nil)
	e.wantProblem(resp, data, 503)
}
