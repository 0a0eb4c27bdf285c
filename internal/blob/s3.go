package blob

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 is a Store in a bucket of an S3-compatible object storage service:
//
//	prefix/ab12…                  blobs, by key: the bytes of a blob smaller
//	                              than a part, else an empty link object
//	                              whose metadata names its data object
//	prefix/data/<random>          the bytes of a larger blob (and, while it
//	                              is being written, its multipart upload)
//	prefix/data/<random>.linked   marks the data object as linked
//
// Bodies are sent unsigned (UNSIGNED-PAYLOAD): signing them would hash
// every byte once more, and the server hashes each record already, as
// every client does when it opens one; use an https:// endpoint for
// integrity in transit.
//
// A temporary blob streams to a multipart upload of a data object under a
// random name (its key, the hash of its bytes, is known only at the end),
// a part at a time, with a few parts in flight and memory bounded by
// them. Nothing exists under the blob's key until Commit marks the data
// object linked and puts the link: S3 has no rename, and a server-side
// copy into place would cost as much as the upload. A blob smaller than
// one part never leaves memory before Commit, which stores it under its
// key with one PUT. Uploads that died with their process (an incomplete
// multipart upload, or a data object never linked) stay invisible until
// the sweeper's RemoveStaleTemps aborts or removes them.
type S3 struct {
	client   *minio.Client
	bucket   string
	prefix   string // "" or ending in "/"
	partSize int64
	parallel int
	// bufs keeps a few part buffers between parts and uploads: reused
	// rather than left to the garbage collector, whose heap would grow to
	// twice the buffers in flight.
	bufs chan []byte

	scanMu       sync.Mutex
	lastScan     time.Time     // of the data objects by RemoveStaleTemps
	lastScanDone time.Duration // its olderThan
}

// S3Options configures an S3 store.
type S3Options struct {
	// Endpoint is the service's URL (http:// or https://, with a port if
	// not the default). Empty: AWS S3 (https://s3.amazonaws.com).
	Endpoint string
	// Region of the bucket; empty lets the client discover it.
	Region string
	// PathStyle addresses the bucket in the path (endpoint/bucket/key)
	// rather than in the host name (bucket.endpoint/key); most self-hosted
	// services need it.
	PathStyle bool
	// Creds are the credentials; nil: the standard AWS chain
	// (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the shared credentials
	// file ~/.aws/credentials with AWS_PROFILE, then the instance's IAM
	// role).
	Creds *credentials.Credentials
	// MaxSize is the largest blob to expect, which sets the part size
	// (S3 allows 10,000 parts); 0: parts of DefaultPartSize.
	MaxSize int64
	// PartSize overrides the part size (at least MinPartSize).
	PartSize int64
	// Parallel is how many parts upload at once (default 2); memory per
	// upload is (Parallel+1) × the part size.
	Parallel int
	// Transport is the HTTP transport (default: minio-go's).
	Transport http.RoundTripper
}

const (
	// MinPartSize is S3's smallest part (but the last).
	MinPartSize = 5 << 20
	// DefaultPartSize is the part size of an upload: S3's smallest, for
	// flat memory; larger records get larger parts (S3Options.MaxSize).
	DefaultPartSize = MinPartSize
	// maxParts is S3's limit of parts in a multipart upload.
	maxParts = 10000
	// linkData and linkSize are the user metadata of a link object: the
	// data object's name under the prefix, and its size.
	linkData = "Keyholder-Data"
	linkSize = "Keyholder-Size"
	// linkedSuffix names the marker of a linked data object.
	linkedSuffix = ".linked"
	// dataScanEvery is how often RemoveStaleTemps lists the data objects
	// (a list that grows with the number of large blobs).
	dataScanEvery = time.Hour
	// s3Timeout bounds each request that is not a body transfer.
	s3Timeout = time.Minute
)

// NewS3 opens the bucket and checks that it exists.
func NewS3(ctx context.Context, bucket, prefix string, o S3Options) (*S3, error) {
	endpoint := o.Endpoint
	if endpoint == "" {
		endpoint = "https://s3.amazonaws.com"
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("blob: S3 endpoint %q is not an http:// or https:// URL of a host", endpoint)
	}
	creds := o.Creds
	if creds == nil {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{},
			&credentials.IAM{},
		})
	}
	lookup := minio.BucketLookupAuto
	if o.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(u.Host, &minio.Options{Creds: creds, Secure: u.Scheme == "https", Region: o.Region,
		BucketLookup: lookup, Transport: o.Transport})
	if err != nil {
		return nil, fmt.Errorf("blob: S3 client: %w", err)
	}
	partSize := o.PartSize
	if partSize == 0 {
		partSize = max(DefaultPartSize, (o.MaxSize+maxParts-1)/maxParts)
	}
	if partSize < MinPartSize {
		return nil, fmt.Errorf("blob: S3 part size %d is below the minimum of %d", partSize, MinPartSize)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	s := &S3{client: client, bucket: bucket, prefix: prefix, partSize: partSize, parallel: max(o.Parallel, 1)}
	if o.Parallel == 0 {
		s.parallel = 2
	}
	s.bufs = make(chan []byte, s.parallel+1)
	cctx, cancel := context.WithTimeout(ctx, s3Timeout)
	defer cancel()
	ok, err := client.BucketExists(cctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("blob: S3 bucket %s at %s: %w", bucket, u.Host, err)
	}
	if !ok {
		return nil, fmt.Errorf("blob: S3 bucket %s does not exist at %s", bucket, u.Host)
	}
	return s, nil
}

// ParseS3URL reads s3://bucket/prefix?endpoint=URL&region=R&path-style=true.
// Without endpoint or region, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL and
// AWS_REGION (or AWS_DEFAULT_REGION) apply, as in the AWS tools.
func ParseS3URL(raw string) (bucket, prefix string, o S3Options, err error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return "", "", o, fmt.Errorf("blob: %q is not an s3://bucket/prefix URL", raw)
	}
	if u.User != nil {
		return "", "", o, errors.New("blob: put S3 credentials in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or ~/.aws/credentials, not in the URL")
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "endpoint", "region", "path-style":
		default:
			return "", "", o, fmt.Errorf("blob: unknown S3 URL parameter %q (known: endpoint, region, path-style)", k)
		}
	}
	o.Endpoint = firstNonEmpty(q.Get("endpoint"), os.Getenv("AWS_ENDPOINT_URL_S3"), os.Getenv("AWS_ENDPOINT_URL"))
	o.Region = firstNonEmpty(q.Get("region"), os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"))
	if ps := q.Get("path-style"); ps != "" {
		if o.PathStyle, err = strconv.ParseBool(ps); err != nil {
			return "", "", o, fmt.Errorf("blob: path-style=%q is not true or false", ps)
		}
	}
	return u.Host, strings.Trim(u.Path, "/"), o, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// Open opens the blob store that spec names: "" is a directory store in
// dir; s3://bucket/prefix?… an S3 store (ParseS3URL); anything else a
// directory store in that directory (file:// URL or path). maxSize is the
// largest blob to expect.
func Open(ctx context.Context, spec, dir string, maxSize int64) (Store, error) {
	switch {
	case spec == "":
		return NewFS(dir)
	case strings.HasPrefix(spec, "s3://"):
		bucket, prefix, o, err := ParseS3URL(spec)
		if err != nil {
			return nil, err
		}
		o.MaxSize = maxSize
		return NewS3(ctx, bucket, prefix, o)
	case strings.HasPrefix(spec, "file://"):
		u, err := url.Parse(spec)
		if err != nil || u.Path == "" || (u.Host != "" && u.Host != "localhost") {
			return nil, fmt.Errorf("blob: %q is not a file:///path URL", spec)
		}
		return NewFS(u.Path)
	case strings.Contains(spec, "://"):
		return nil, fmt.Errorf("blob: %q: the blob store is a directory or an s3:// URL", spec)
	}
	return NewFS(spec)
}

func (s *S3) key(k string) string { return s.prefix + k }

func (s *S3) getBuf() []byte {
	select {
	case b := <-s.bufs:
		return b
	default:
		return make([]byte, 0, s.partSize)
	}
}

func (s *S3) putBuf(b []byte) {
	select {
	case s.bufs <- b[:0]:
	default: // enough kept
	}
}

func (s *S3) dataPrefix() string { return s.prefix + "data/" }

// Create starts a temporary blob. Nothing is sent until a part is full.
func (s *S3) Create() (Temp, error) {
	var r [16]byte
	rand.Read(r[:])
	ctx, cancel := context.WithCancel(context.Background())
	return &s3Temp{s: s, name: s.dataPrefix() + hex.EncodeToString(r[:]), ctx: ctx, cancel: cancel,
		slots: make(chan struct{}, s.parallel)}, nil
}

type s3Temp struct {
	s      *S3
	name   string
	ctx    context.Context // canceled by Abort: stops the parts in flight
	cancel context.CancelFunc
	buf    []byte // the part being filled
	pooled bool   // buf came from s.bufs
	size   int64
	done   bool
	// Multipart state: the upload, the parts sent (slots bounds the parts
	// in flight), and completed once the data object exists.
	uploadID  string
	next      int
	slots     chan struct{}
	wg        sync.WaitGroup
	mu        sync.Mutex
	parts     []minio.CompletePart
	err       error // the first failure: the temporary blob is unusable
	completed bool
}

func (t *s3Temp) Name() string { return t.name }

func (t *s3Temp) failure() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

func (t *s3Temp) fail(err error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = err
	}
	return t.err
}

// smallBuf is how far a blob's first part grows by appending before it
// takes a full part buffer: small records cost no more memory than their
// size.
const smallBuf = 256 << 10

func (t *s3Temp) Write(p []byte) (int, error) {
	if t.done {
		return 0, errors.New("blob: write to a finished temporary blob")
	}
	written := 0
	for len(p) > 0 {
		if err := t.failure(); err != nil {
			return written, err
		}
		k := min(int64(len(p)), t.s.partSize-int64(len(t.buf)))
		if !t.pooled && int64(len(t.buf))+k > smallBuf {
			t.buf, t.pooled = append(t.s.getBuf(), t.buf...), true
		}
		t.buf = append(t.buf, p[:k]...)
		p, written, t.size = p[k:], written+int(k), t.size+k
		if int64(len(t.buf)) == t.s.partSize {
			if err := t.sendPart(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// sendPart starts the upload of the buffered part, waiting while Parallel
// parts are in flight.
func (t *s3Temp) sendPart() error {
	if t.next == maxParts {
		return t.fail(fmt.Errorf("blob: the blob exceeds S3's %d parts of %d bytes", maxParts, t.s.partSize))
	}
	if t.uploadID == "" {
		ctx, cancel := context.WithTimeout(t.ctx, s3Timeout)
		id, err := minio.Core{Client: t.s.client}.NewMultipartUpload(ctx, t.s.bucket, t.name, minio.PutObjectOptions{})
		cancel()
		if err != nil {
			return t.fail(fmt.Errorf("blob: starting an S3 multipart upload: %w", err))
		}
		t.uploadID = id
	}
	t.next++
	num, buf, pooled := t.next, t.buf, t.pooled
	t.buf, t.pooled = nil, false
	select {
	case t.slots <- struct{}{}:
	case <-t.ctx.Done():
		return t.fail(errors.New("blob: temporary blob aborted"))
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		part, err := minio.Core{Client: t.s.client}.PutObjectPart(t.ctx, t.s.bucket, t.name, t.uploadID, num,
			bytes.NewReader(buf), int64(len(buf)), minio.PutObjectPartOptions{DisableContentSha256: true})
		<-t.slots
		// After a failed request the transport may still read the body: the
		// buffer is reused only after a part went through.
		if pooled && err == nil {
			t.s.putBuf(buf)
		}
		if err != nil {
			t.fail(fmt.Errorf("blob: S3 part %d: %w", num, err))
			return
		}
		t.mu.Lock()
		t.parts = append(t.parts, minio.CompletePart{PartNumber: num, ETag: part.ETag})
		t.mu.Unlock()
	}()
	return nil
}

// Sync sends the last part and completes the multipart upload of the
// temporary object. A blob smaller than a part stays in memory: Commit
// stores it with one request.
func (t *s3Temp) Sync() error {
	if t.done {
		return errors.New("blob: temporary blob already finished")
	}
	if t.uploadID == "" || t.completed {
		return t.failure()
	}
	if len(t.buf) > 0 {
		if err := t.sendPart(); err != nil {
			return err
		}
	}
	t.wg.Wait()
	if err := t.failure(); err != nil {
		return err
	}
	slices.SortFunc(t.parts, func(a, b minio.CompletePart) int { return a.PartNumber - b.PartNumber })
	ctx, cancel := context.WithTimeout(t.ctx, s3Timeout)
	defer cancel()
	if _, err := (minio.Core{Client: t.s.client}).CompleteMultipartUpload(ctx, t.s.bucket, t.name, t.uploadID, t.parts,
		minio.PutObjectOptions{}); err != nil {
		return t.fail(fmt.Errorf("blob: completing the S3 multipart upload: %w", err))
	}
	t.completed = true
	return nil
}

// Commit stores the blob under key: with one PUT for a blob smaller than
// a part, else by marking the completed data object linked and putting
// the link under key. If a blob is under key already, it has these very
// bytes (a key is the hash of its blob), and it stays.
func (t *s3Temp) Commit(key string) error {
	if err := readyToCommit(t, t.done, key); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(t.ctx, s3Timeout)
	defer cancel()
	dst := t.s.key(key)
	if t.uploadID == "" {
		_, err := t.s.client.PutObject(ctx, t.s.bucket, dst, bytes.NewReader(t.buf), int64(len(t.buf)),
			minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true})
		t.Abort()
		if err != nil {
			return fmt.Errorf("blob: S3 put: %w", err)
		}
		return nil
	}
	if _, err := t.s.client.StatObject(ctx, t.s.bucket, dst, minio.StatObjectOptions{}); err == nil {
		return t.Abort()
	} else if !isNotFound(err) {
		t.Abort()
		return fmt.Errorf("blob: S3 stat: %w", err)
	}
	// The marker first: a link never names data that the sweeper could
	// take for an upload that died before its commit.
	_, err := t.s.client.PutObject(ctx, t.s.bucket, t.name+linkedSuffix, bytes.NewReader(nil), 0, minio.PutObjectOptions{})
	if err == nil {
		_, err = t.s.client.PutObject(ctx, t.s.bucket, dst, bytes.NewReader(nil), 0, minio.PutObjectOptions{
			UserMetadata: map[string]string{linkData: strings.TrimPrefix(t.name, t.s.prefix), linkSize: strconv.FormatInt(t.size, 10)}})
		if err != nil {
			t.s.client.RemoveObject(ctx, t.s.bucket, t.name+linkedSuffix, minio.RemoveObjectOptions{})
		}
	}
	if err != nil {
		t.Abort()
		return fmt.Errorf("blob: S3 link: %w", err)
	}
	t.finish()
	return nil
}

// finish stops the parts in flight and releases the buffers.
func (t *s3Temp) finish() {
	t.done = true
	t.cancel()
	t.wg.Wait()
	if t.pooled {
		t.s.putBuf(t.buf)
	}
	t.buf, t.pooled = nil, false
}

// Abort stops the parts in flight and aborts the multipart upload, or
// removes the completed data object.
func (t *s3Temp) Abort() error {
	if t.done {
		return nil
	}
	t.finish()
	ctx, cancel := context.WithTimeout(context.Background(), s3Timeout)
	defer cancel()
	var err error
	switch {
	case t.completed:
		err = t.s.client.RemoveObject(ctx, t.s.bucket, t.name, minio.RemoveObjectOptions{})
	case t.uploadID != "":
		err = minio.Core{Client: t.s.client}.AbortMultipartUpload(ctx, t.s.bucket, t.name, t.uploadID)
		if isNoSuchUpload(err) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("blob: removing the temporary S3 upload: %w", err)
	}
	return nil
}

func isNotFound(err error) bool {
	switch minio.ToErrorResponse(err).Code {
	case minio.NoSuchKey, "NotFound":
		return true
	}
	return false
}

func isNoSuchUpload(err error) bool {
	return err != nil && minio.ToErrorResponse(err).Code == minio.NoSuchUpload
}

// Open opens a blob; reading fetches it with ranged GETs from where the
// reader is (a Seek starts a new request at the next Read).
func (s *S3) Open(key string) (File, error) {
	if !ValidKey(key) {
		return nil, ErrBadKey
	}
	ctx, cancel := context.WithTimeout(context.Background(), s3Timeout)
	defer cancel()
	name, size, err := s.resolve(ctx, key)
	if err != nil {
		return nil, err
	}
	return &s3File{s: s, name: name, size: size}, nil
}

// resolve returns the object holding a blob's bytes, and their size:
// the object under key, or the data object its link names.
func (s *S3) resolve(ctx context.Context, key string) (name string, size int64, err error) {
	info, err := s.client.StatObject(ctx, s.bucket, s.key(key), minio.StatObjectOptions{})
	if isNotFound(err) {
		return "", 0, ErrNotFound
	}
	if err != nil {
		return "", 0, fmt.Errorf("blob: S3 stat: %w", err)
	}
	data, ok := info.UserMetadata[linkData]
	if !ok {
		return s.key(key), info.Size, nil
	}
	size, err = strconv.ParseInt(info.UserMetadata[linkSize], 10, 64)
	if err != nil || size < 0 || !strings.HasPrefix(data, "data/") || strings.Contains(data, "..") {
		return "", 0, fmt.Errorf("blob: S3 link %s is damaged", key)
	}
	return s.prefix + data, size, nil
}

type s3File struct {
	s    *S3
	name string
	size int64
	off  int64
	body io.ReadCloser // a GET from off, opened by Read
}

func (f *s3File) Size() int64 { return f.size }

func (f *s3File) Read(p []byte) (int, error) {
	if f.off >= f.size {
		return 0, io.EOF
	}
	if f.body == nil {
		var o minio.GetObjectOptions
		if f.off > 0 {
			o.SetRange(f.off, 0)
		}
		body, _, _, err := minio.Core{Client: f.s.client}.GetObject(context.Background(), f.s.bucket, f.name, o)
		if err != nil {
			if isNotFound(err) {
				return 0, ErrNotFound
			}
			return 0, fmt.Errorf("blob: S3 get: %w", err)
		}
		f.body = body
	}
	n, err := f.body.Read(p)
	f.off += int64(n)
	if err == io.EOF && f.off < f.size {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (f *s3File) Seek(off int64, whence int) (int64, error) {
	off, err := SeekOffset(off, whence, f.off, f.size)
	if err != nil {
		return 0, err
	}
	if off != f.off && f.body != nil {
		f.body.Close()
		f.body = nil
	}
	f.off = off
	return off, nil
}

func (f *s3File) Close() error {
	if f.body != nil {
		f.body.Close()
		f.body = nil
	}
	return nil
}

// Delete removes a blob.
func (s *S3) Delete(key string) error {
	if !ValidKey(key) {
		return ErrBadKey
	}
	ctx, cancel := context.WithTimeout(context.Background(), s3Timeout)
	defer cancel()
	name, _, err := s.resolve(ctx, key)
	if err == ErrNotFound {
		return nil
	}
	if err != nil {
		return err
	}
	// The key first: once it is gone the blob is, and what a crash leaves
	// after it is data no key names.
	remove := []string{s.key(key)}
	if name != s.key(key) {
		remove = append(remove, name, name+linkedSuffix)
	}
	for _, o := range remove {
		if err := s.client.RemoveObject(ctx, s.bucket, o, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
			return fmt.Errorf("blob: S3 delete: %w", err)
		}
	}
	return nil
}

// Exists reports whether a blob exists.
func (s *S3) Exists(key string) (bool, error) {
	if !ValidKey(key) {
		return false, ErrBadKey
	}
	ctx, cancel := context.WithTimeout(context.Background(), s3Timeout)
	defer cancel()
	_, err := s.client.StatObject(ctx, s.bucket, s.key(key), minio.StatObjectOptions{})
	if isNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("blob: S3 stat: %w", err)
	}
	return true, nil
}

// RemoveStaleTemps aborts the multipart uploads started more than
// olderThan ago, and removes the data objects as old that no link names
// (their process died between the upload and the commit): what a killed
// replica left. An upload takes StaleTempAge to count as stale, far
// longer than any upload runs. The data objects, whose list grows with
// the number of large blobs, are listed at most once an hour.
func (s *S3) RemoveStaleTemps(olderThan time.Duration) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*s3Timeout)
	defer cancel()
	cutoff := time.Now().Add(-olderThan)
	n := 0
	for u := range s.client.ListIncompleteUploads(ctx, s.bucket, s.dataPrefix(), true) {
		if u.Err != nil {
			return n, fmt.Errorf("blob: listing S3 multipart uploads: %w", u.Err)
		}
		if u.Initiated.After(cutoff) {
			continue
		}
		err := minio.Core{Client: s.client}.AbortMultipartUpload(ctx, s.bucket, u.Key, u.UploadID)
		if err == nil {
			n++
		} else if !isNoSuchUpload(err) {
			return n, fmt.Errorf("blob: aborting S3 multipart upload: %w", err)
		}
	}
	s.scanMu.Lock()
	defer s.scanMu.Unlock()
	// A scan within the hour that took at least as much found the rest.
	if time.Since(s.lastScan) < dataScanEvery && olderThan >= s.lastScanDone {
		return n, nil
	}
	unlinked, err := s.unlinked(ctx)
	if err != nil {
		return n, err
	}
	for _, o := range unlinked {
		if o.LastModified.After(cutoff) {
			continue
		}
		if err := s.client.RemoveObject(ctx, s.bucket, o.Key, minio.RemoveObjectOptions{}); err != nil && !isNotFound(err) {
			return n, fmt.Errorf("blob: removing unlinked S3 data: %w", err)
		}
		n++
	}
	s.lastScan, s.lastScanDone = time.Now(), olderThan
	return n, nil
}

// unlinked lists the data objects without a marker and the markers
// without a data object. A list returns keys in order, so a marker comes
// right after its data object (all data names have one length).
func (s *S3) unlinked(ctx context.Context) ([]minio.ObjectInfo, error) {
	var out []minio.ObjectInfo
	var prev *minio.ObjectInfo // a data object whose marker may follow
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.dataPrefix(), Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("blob: listing S3 data objects: %w", o.Err)
		}
		if data, ok := strings.CutSuffix(o.Key, linkedSuffix); ok {
			switch {
			case prev == nil:
				out = append(out, o)
			case prev.Key != data:
				out = append(out, *prev, o)
			}
			prev = nil
			continue
		}
		if prev != nil {
			out = append(out, *prev)
		}
		prev = &o
	}
	if prev != nil {
		out = append(out, *prev)
	}
	return out, nil
}

// Check tells whether the bucket answers; object storage has no free
// space to compare with minFree.
func (s *S3) Check(minFree int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("blob: S3 bucket %s: %w", s.bucket, err)
	}
	if !ok {
		return fmt.Errorf("blob: S3 bucket %s does not exist", s.bucket)
	}
	return nil
}

// Count returns the number of blobs, and of incomplete uploads and data
// objects that no link names (tests use it to check that a refused upload
// left nothing behind).
func (s *S3) Count() (blobs, temps int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), s3Timeout)
	defer cancel()
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix, Recursive: true}) {
		if o.Err != nil {
			return 0, 0, o.Err
		}
		if !strings.HasPrefix(o.Key, s.dataPrefix()) {
			blobs++
		}
	}
	unlinked, err := s.unlinked(ctx)
	if err != nil {
		return 0, 0, err
	}
	temps = len(unlinked)
	for u := range s.client.ListIncompleteUploads(ctx, s.bucket, s.prefix, true) {
		if u.Err != nil {
			return 0, 0, u.Err
		}
		temps++
	}
	return blobs, temps, nil
}
