package server

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
)

// problemError is an error that becomes an RFC 9457 response.
type problemError struct {
	p api.Problem
}

// Error is what the server logs: the status, title and detail.
func (e *problemError) Error() string {
	if e.p.Detail != "" {
		return fmt.Sprintf("%d %s: %s", e.p.Status, e.p.Title, e.p.Detail)
	}
	return fmt.Sprintf("%d %s", e.p.Status, e.p.Title)
}

func problem(status int, typ, title, detail string) error {
	return &problemError{p: api.Problem{Type: typ, Title: title, Status: status, Detail: detail}}
}

func badRequest(detail string) error {
	return problem(http.StatusBadRequest, api.ProblemBadRequest, "Bad request", detail)
}

func notFound(what string) error {
	return problem(http.StatusNotFound, api.ProblemNotFound, "Not found", what+" not found")
}

func conflict(detail string) error {
	return problem(http.StatusConflict, api.ProblemConflict, "Conflict", detail)
}

func unprocessable(typ, title, detail string) error {
	return problem(http.StatusUnprocessableEntity, typ, title, detail)
}

func unauthorized(detail string) error {
	return problem(http.StatusUnauthorized, api.ProblemUnauthorized, "Unauthorized", detail)
}

func tooLarge(detail string) error {
	return problem(http.StatusRequestEntityTooLarge, api.ProblemTooLarge, "Request too large", detail)
}

// typeForStatus is the generic problem type of a status (errors that do
// not come with their own type: echo's, http.ServeContent's).
func typeForStatus(status int) string {
	switch status {
	case http.StatusBadRequest:
		return api.ProblemBadRequest
	case http.StatusUnauthorized:
		return api.ProblemUnauthorized
	case http.StatusForbidden:
		return api.ProblemForbidden
	case http.StatusNotFound:
		return api.ProblemNotFound
	case http.StatusMethodNotAllowed:
		return api.ProblemMethod
	case http.StatusRequestTimeout:
		return api.ProblemRequestTimeout
	case http.StatusConflict:
		return api.ProblemConflict
	case http.StatusPreconditionFailed:
		return api.ProblemPreconditionFailed
	case http.StatusRequestEntityTooLarge:
		return api.ProblemTooLarge
	case http.StatusUnsupportedMediaType:
		return api.ProblemUnsupportedMT
	case http.StatusRequestedRangeNotSatisfiable:
		return api.ProblemRangeNotSatisfiable
	case http.StatusTooManyRequests:
		return api.ProblemRateLimited
	case http.StatusServiceUnavailable:
		return api.ProblemUnavailable
	case http.StatusInsufficientStorage:
		return api.ProblemInsufficientStorage
	}
	if status >= 500 {
		return api.ProblemInternal
	}
	return api.ProblemBadRequest
}

// errorHandler turns every error, echo's own included, into a problem body.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var p api.Problem
	var pe *problemError
	var he *echo.HTTPError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &pe):
		p = pe.p
	case errors.As(err, &mbe):
		p = api.Problem{Type: api.ProblemTooLarge, Title: "Request too large", Status: http.StatusRequestEntityTooLarge,
			Detail: fmt.Sprintf("the body exceeds %d bytes", mbe.Limit)}
	case errors.As(err, &he):
		p = api.Problem{Status: he.Code, Title: http.StatusText(he.Code), Type: typeForStatus(he.Code)}
		if he.Code == http.StatusNotFound {
			p.Detail = "no such route"
		}
	default:
		p = s.serverProblem(c, err)
	}
	if api.ProblemStatus(p.Type) != p.Status {
		// A programming error: keep the status, make the type agree.
		s.log.Error("problem type does not match its status", "request_id", requestID(c), "route", c.Path(),
			"type", p.Type, "status", p.Status)
		p.Type = typeForStatus(p.Status)
	}
	switch p.Status {
	case http.StatusTooManyRequests:
		c.Response().Header().Set("Retry-After", "1")
	case http.StatusServiceUnavailable:
		c.Response().Header().Set("Retry-After", retryAfterUnavailable)
	}
	body, _ := json.Marshal(p)
	c.Response().Header().Set(echo.HeaderContentType, api.ContentTypeProblemJSON)
	c.Response().Header().Set("Cache-Control", "no-store")
	c.Response().WriteHeader(p.Status)
	if c.Request().Method != http.MethodHead {
		c.Response().Write(body)
	}
}

// retryAfterUnavailable is the Retry-After (seconds) of a 503: long
// enough not to hammer a database that is restarting, short enough that a
// client notices it is back.
const retryAfterUnavailable = "5"

// serverProblem is the answer to an error no handler turned into a
// problem of its own, logged with the request id. Two kinds say something
// a client can act on: no room to write (507, try later or tell the
// operator) and a database that cannot serve now (503, try again after
// Retry-After). Anything else is a 500.
func (s *Server) serverProblem(c echo.Context, err error) api.Problem {
	attrs := []any{"request_id", requestID(c), "route", c.Path(), "error", err.Error()}
	switch {
	case store.IsFull(err):
		s.log.Error("insufficient storage: no room to write", attrs...)
		return api.Problem{Type: api.ProblemInsufficientStorage, Title: "Insufficient storage", Status: http.StatusInsufficientStorage,
			Detail: "the server has no room to store this (disk or quota full); try again later, or tell the operator"}
	case store.IsUnavailable(err):
		s.log.Error("database unavailable", attrs...)
		return api.Problem{Type: api.ProblemUnavailable, Title: "Service unavailable", Status: http.StatusServiceUnavailable,
			Detail: "the database cannot be reached; try again after Retry-After (retrying an upload or access request with its Idempotency-Key is safe)"}
	}
	s.log.Error("internal error", attrs...)
	return api.Problem{Type: api.ProblemInternal, Title: "Internal server error", Status: http.StatusInternalServerError}
}

// decodeJSON reads one JSON value of at most limit bytes into dst, refusing
// unknown fields, repeated keys and trailing data.
func decodeJSON(c echo.Context, limit int64, dst any) error {
	data, err := readJSONBody(c, limit)
	if err != nil {
		return err
	}
	return decodeJSONBytes(data, dst)
}

// decodeOptionalJSON is decodeJSON for a body that may also be empty (or
// only white space), which leaves dst as it is.
func decodeOptionalJSON(c echo.Context, limit int64, dst any) error {
	data, err := readJSONBody(c, limit)
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return err
	}
	return decodeJSONBytes(data, dst)
}

// readJSONBody checks the content type and reads a body of at most limit
// bytes (within the server's body timeout, see bodyDeadlines).
func readJSONBody(c echo.Context, limit int64) ([]byte, error) {
	if ct := c.Request().Header.Get(echo.HeaderContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, problem(http.StatusUnsupportedMediaType, api.ProblemUnsupportedMT, "Unsupported media type", "send application/json")
		}
	}
	data, err := io.ReadAll(http.MaxBytesReader(c.Response(), c.Request().Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(fmt.Sprintf("the JSON body exceeds %d bytes", limit))
		}
		return nil, badRequest("reading the body failed")
	}
	return data, nil
}

// decodeJSONBytes decodes one JSON value into dst. Besides what
// encoding/json refuses, it refuses unknown fields, trailing data, and a
// key repeated in any object (api.CheckJSON): the bytes are stored and
// shown to the user's device, whose parser must not read another value
// than the server did.
func decodeJSONBytes(data []byte, dst any) error {
	if err := api.CheckJSON(data); err != nil {
		return problem(http.StatusBadRequest, api.ProblemInvalidJSON, "Invalid JSON", jsonDetail(err))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return problem(http.StatusBadRequest, api.ProblemInvalidJSON, "Invalid JSON", jsonDetail(err))
	}
	return nil
}

// jsonDetail describes a decoding error without echoing input values.
func jsonDetail(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var de *api.DuplicateKeyError
	switch {
	case errors.As(err, &de), errors.Is(err, api.ErrTrailingData):
		return err.Error() // names the key (cut short), never a value
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the body is empty or truncated"
	}
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg // "json: unknown field \"x\"" names only the field
}

const ctxRequestID = "keyholder.request_id"

func requestID(c echo.Context) string {
	if v, ok := c.Get(ctxRequestID).(string); ok {
		return v
	}
	return ""
}

func (s *Server) requestIDMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		var b [8]byte
		rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		c.Set(ctxRequestID, id)
		c.Response().Header().Set(echo.HeaderXRequestID, id)
		return next(c)
	}
}

func (s *Server) recoverMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.Error("panic", "request_id", requestID(c), "route", c.Path(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
				err = errors.New("panic")
			}
		}()
		return next(c)
	}
}

// observe logs each request (method, route template, status, duration; never
// headers, bodies or query strings) and feeds the metrics.
func (s *Server) observe(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err)
		}
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		status := c.Response().Status
		d := time.Since(start)
		s.metrics.observe(c.Request().Method, route, status, d)
		lvl := slog.LevelInfo
		if status >= 500 {
			lvl = slog.LevelError
		}
		if route != "/metrics" && route != "/healthz" {
			s.log.LogAttrs(c.Request().Context(), lvl, "request",
				slog.String("request_id", requestID(c)), slog.String("method", c.Request().Method),
				slog.String("route", route), slog.Int("status", status), slog.Int64("bytes", c.Response().Size),
				slog.Duration("duration", d))
		}
		return nil
	}
}
