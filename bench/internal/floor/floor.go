// Package floor measures, on this machine and in the same run as a
// benchmark, the least an approval or a grant can cost: the cryptography
// the protocol requires, the HTTP exchanges it needs and the durable
// commits and reads by key it needs, each done by the thinnest stack at
// hand (the standard library's crypto and net/http; pgx or SQLite with no
// ORM). A benchmark divides its CPU per operation by the floor: the ratio
// says how far the implementation is from what the machine allows, and it
// holds from one day to the next while the machine's speed does not (the
// same commit measured 4.7 and 9.6 ms of CPU per approval on two days).
//
// The floor is a lower bound, not a design: it has no authentication, no
// audit rows, no log entries, no key chain, and only the messages without
// which the protocol cannot run (docs/performance.md, "The floor").
package floor

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keyholder/keyholder/bench/internal/measure"
	"github.com/keyholder/keyholder/internal/store"
)

// Costs are the CPU times of the floor's parts, each per operation.
type Costs struct {
	// X25519 is one X25519 scalar multiplication (an ECDH), Sign an
	// Ed25519 signature, Verify an Ed25519 verification, Bulk the SHA-256
	// and AES-256-CTR of one RecordSize record: one thread each.
	X25519, Sign, Verify, Bulk time.Duration
	// Exchange is one HTTP request with a RecordSize body and its small
	// response over loopback, client and server together, Concurrency at
	// a time on kept-alive connections.
	Exchange time.Duration
	// Commit is a durable insert of one RecordSize row in its own
	// transaction, Read the read of one row by primary key, Concurrency at
	// a time: the client's CPU and, on a local PostgreSQL, the server's.
	Commit, Read time.Duration
}

// RecordSize is the size of a record, a request body and a stored row in
// the floor, as in the approval and grant benchmarks.
const RecordSize = 1024

// Concurrency is how many exchanges, commits or reads are in flight at
// once: the 8 parties of issue 11's goals.
const Concurrency = 8

// Approval is the floor of one approval round trip, sealed to one device:
//   - the party seals (an X25519 key agreement: 2 multiplications; the
//     record's SHA-256 and encryption) and signs its submission; it
//     verifies the approval it reads back;
//   - the device unwraps the session key (1 multiplication), verifies the
//     submission and signs the approval;
//   - the server verifies both signatures and hashes the ciphertext;
//   - 4 HTTP exchanges (upload, the device's fetch, its answer, the
//     party's read of the decision) and 2 durable commits (the upload, the
//     answer) with 2 reads by key (the device's fetch, the party's read).
func (c Costs) Approval() time.Duration {
	crypto := 3*c.X25519 + 2*c.Sign + 4*c.Verify + 2*c.Bulk
	return crypto + 4*c.Exchange + 2*c.Commit + 2*c.Read
}

// Grant is the floor of one grant round trip: the device unwraps the
// session key (1 multiplication), rewraps it to the party (2) and signs
// the grant; the server verifies it; 3 HTTP exchanges (the access request,
// the device's fetch, its grant), 2 durable commits (the access request,
// the grant) and 1 read by key (the device's fetch). With fetch, the party
// also fetches its grant (an exchange and a read by key), unwraps its key
// packet (1 multiplication), verifies the grant and decrypts the record.
func (c Costs) Grant(fetch bool) time.Duration {
	d := 3*c.X25519 + c.Sign + c.Verify + 3*c.Exchange + 2*c.Commit + c.Read
	if fetch {
		d += c.X25519 + c.Verify + c.Bulk + c.Exchange + c.Read
	}
	return d
}

// String is the parts, in microseconds, then both floors.
func (c Costs) String() string {
	us := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e3, 'f', 1, 64) + " µs" }
	return fmt.Sprintf("X25519 %s, Ed25519 sign %s, verify %s, SHA-256 + AES of %d B %s; HTTP exchange %s; durable commit %s, read by key %s",
		us(c.X25519), us(c.Sign), us(c.Verify), RecordSize, us(c.Bulk), us(c.Exchange), us(c.Commit), us(c.Read))
}

// Measure measures the floor's parts. db is a postgres:// DSN (a table of
// its own is created in it and dropped) or a directory for a SQLite
// database file (created and removed). n is how many exchanges, commits
// and reads are timed (the cryptography runs a fixed number of rounds).
func Measure(ctx context.Context, db string, n int) (Costs, error) {
	c, err := MeasureCrypto()
	if err != nil {
		return c, err
	}
	if c.Exchange, err = exchangeCost(ctx, n); err != nil {
		return c, fmt.Errorf("floor: HTTP: %w", err)
	}
	if store.IsPostgres(db) {
		c.Commit, c.Read, err = postgresCosts(ctx, db, n)
	} else {
		c.Commit, c.Read, err = sqliteCosts(ctx, db, n)
	}
	if err != nil {
		return c, fmt.Errorf("floor: database: %w", err)
	}
	return c, nil
}

// cryptoSpan is how much thread CPU each primitive is timed for: the
// thread's CPU clock may tick at 10 ms.
const cryptoSpan = 250 * time.Millisecond

// MeasureCrypto measures the floor's cryptographic parts alone (X25519,
// Sign, Verify, Bulk), each on one locked thread.
func MeasureCrypto() (Costs, error) {
	var c Costs
	var err error
	if c.X25519, c.Sign, c.Verify, c.Bulk, err = cryptoCosts(); err != nil {
		return c, fmt.Errorf("floor: cryptography: %w", err)
	}
	return c, nil
}

// cryptoCosts times each primitive on one locked thread.
func cryptoCosts() (x, sign, verify, bulk time.Duration, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return
	}
	peer, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return
	}
	pub, spriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return
	}
	msg := bytes.Repeat([]byte("statement "), 40)
	sig := ed25519.Sign(spriv, msg)
	block, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		return
	}
	data, out := make([]byte, RecordSize), make([]byte, RecordSize)
	timed := func(f func() error) (time.Duration, error) {
		t0, rounds := measure.ThreadCPU(), 0
		for ; measure.ThreadCPU()-t0 < cryptoSpan; rounds++ {
			for range 50 {
				if err := f(); err != nil {
					return 0, err
				}
			}
		}
		return (measure.ThreadCPU() - t0) / time.Duration(50*rounds), nil
	}
	if x, err = timed(func() error { _, err := priv.ECDH(peer.PublicKey()); return err }); err != nil {
		return
	}
	if sign, err = timed(func() error { ed25519.Sign(spriv, msg); return nil }); err != nil {
		return
	}
	if verify, err = timed(func() error {
		if !ed25519.Verify(pub, msg, sig) {
			return errors.New("ed25519 verification failed")
		}
		return nil
	}); err != nil {
		return
	}
	bulk, err = timed(func() error {
		sha256.Sum256(data)
		cipher.NewCTR(block, make([]byte, aes.BlockSize)).XORKeyStream(out, data)
		return nil
	})
	return
}

// exchangeCost times n POSTs of a RecordSize body, each answered with a
// small JSON object, by a net/http server in this process: both sides'
// CPU per exchange.
func exchangeCost(ctx context.Context, n int) (time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	reply := []byte(`{"id":"0123456789abcdef0123456789abcdef","state":"pending","created_at":"2026-01-01T00:00:00Z"}`)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(reply)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConnsPerHost: Concurrency}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	url := "http://" + ln.Addr().String() + "/v1/records"
	body := bytes.Repeat([]byte("k"), RecordSize)
	post := func(ctx context.Context, _ int) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		return err
	}
	if err := measure.Parallel(ctx, Concurrency, Concurrency*4, post); err != nil { // open the connections
		return 0, err
	}
	t0 := measure.ProcessCPU()
	if err := measure.Parallel(ctx, Concurrency, n, post); err != nil {
		return 0, err
	}
	return (measure.ProcessCPU() - t0) / time.Duration(n), nil
}

// postgresCosts times n durable single-row inserts and n reads by key on a
// table of its own, through a pgx pool of Concurrency connections. On a
// local server the postgres processes' CPU counts too.
func postgresCosts(ctx context.Context, dsn string, n int) (commit, read time.Duration, err error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return 0, 0, err
	}
	defer pool.Close()
	table := fmt.Sprintf("keyholder_floor_%d", os.Getpid())
	if _, err = pool.Exec(ctx, "CREATE TABLE "+table+" (id bigint PRIMARY KEY, v bytea NOT NULL)"); err != nil {
		return 0, 0, err
	}
	defer pool.Exec(context.WithoutCancel(ctx), "DROP TABLE "+table)
	local := measure.PostgresIsLocal(dsn)
	cpu := func() time.Duration {
		t := measure.ProcessCPU()
		if local {
			t += measure.PostgresCPU()
		}
		return t
	}
	row := bytes.Repeat([]byte("r"), RecordSize)
	var base atomic.Int64
	insert := func(ctx context.Context, i int) error {
		_, err := pool.Exec(ctx, "INSERT INTO "+table+" (id, v) VALUES ($1, $2)", base.Load()+int64(i), row)
		return err
	}
	if err = measure.Parallel(ctx, Concurrency, Concurrency*4, insert); err != nil { // open the connections, prepare
		return 0, 0, err
	}
	base.Store(int64(Concurrency * 4))
	t0 := cpu()
	if err = measure.Parallel(ctx, Concurrency, n, insert); err != nil {
		return 0, 0, err
	}
	commit = (cpu() - t0) / time.Duration(n)
	t0 = cpu()
	err = measure.Parallel(ctx, Concurrency, n, func(ctx context.Context, i int) error {
		var v []byte
		return pool.QueryRow(ctx, "SELECT v FROM "+table+" WHERE id = $1", base.Load()+int64(i)).Scan(&v)
	})
	read = (cpu() - t0) / time.Duration(n)
	return commit, read, err
}

// sqliteCosts is postgresCosts on a SQLite file in dir, opened with the
// pragmas the store uses (store.SQLiteDSN).
func sqliteCosts(ctx context.Context, dir string, n int) (commit, read time.Duration, err error) {
	d, err := os.MkdirTemp(dir, "keyholder-floor-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(d)
	db, err := sql.Open("sqlite", store.SQLiteDSN(filepath.Join(d, "floor.db")))
	if err != nil {
		return 0, 0, err
	}
	defer db.Close()
	db.SetMaxOpenConns(Concurrency)
	db.SetMaxIdleConns(Concurrency)
	if _, err = db.ExecContext(ctx, "CREATE TABLE floor (id INTEGER PRIMARY KEY, v BLOB NOT NULL)"); err != nil {
		return 0, 0, err
	}
	row := bytes.Repeat([]byte("r"), RecordSize)
	insert := func(ctx context.Context, i int) error {
		_, err := db.ExecContext(ctx, "INSERT INTO floor (id, v) VALUES (?, ?)", i, row)
		return err
	}
	// Open the connections first, as postgresCosts does; their rows come
	// after the timed ones'.
	if err = measure.Parallel(ctx, Concurrency, Concurrency*4, func(ctx context.Context, i int) error {
		return insert(ctx, n+i)
	}); err != nil {
		return 0, 0, err
	}
	t0 := measure.ProcessCPU()
	if err = measure.Parallel(ctx, Concurrency, n, insert); err != nil {
		return 0, 0, err
	}
	commit = (measure.ProcessCPU() - t0) / time.Duration(n)
	t0 = measure.ProcessCPU()
	err = measure.Parallel(ctx, Concurrency, n, func(ctx context.Context, i int) error {
		var v []byte
		return db.QueryRowContext(ctx, "SELECT v FROM floor WHERE id = ?", i).Scan(&v)
	})
	read = (measure.ProcessCPU() - t0) / time.Duration(n)
	return commit, read, err
}
