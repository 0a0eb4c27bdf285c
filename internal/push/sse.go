package push

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
)

// SetSSEHeaders sets the response headers of a server-sent events stream.
// Call it before the first write.
func SetSSEHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	// Reverse proxies (nginx) would otherwise buffer the stream and delay events.
	h.Set("X-Accel-Buffering", "no")
}

// sseData is the JSON of an SSE data line: the request id and nothing else.
type sseData struct {
	Request string `json:"request"`
}

// WriteSSE writes ev as one SSE frame and flushes it:
//
//	id: <ev.ID>
//	data: {"request":"<ev.RequestID>"}
//
// The id line is left out when ev.ID is 0 (use that for events replayed from
// the database, which have no hub id). If w is an http.ResponseWriter (or an
// http.Flusher) it is flushed, so the frame leaves now rather than when a
// buffer fills; a ResponseWriter that cannot flush is an error, because SSE
// through it would stall.
func WriteSSE(w io.Writer, ev Event) error {
	if !ValidRequestID(ev.RequestID) {
		return ErrBadRequestID
	}
	data, err := json.Marshal(sseData{Request: ev.RequestID})
	if err != nil {
		return err
	}
	buf := make([]byte, 0, 64+len(data))
	if ev.ID != 0 {
		buf = append(buf, "id: "...)
		buf = strconv.AppendUint(buf, ev.ID, 10)
		buf = append(buf, '\n')
	}
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	return flush(w)
}

// WriteSSEHeartbeat writes an SSE comment frame and flushes it. Send one
// every 15-30 s: it keeps proxies from closing an idle stream and makes a
// write to a vanished client fail, which ends the handler and its
// subscription.
func WriteSSEHeartbeat(w io.Writer) error {
	if _, err := io.WriteString(w, ": ping\n\n"); err != nil {
		return err
	}
	return flush(w)
}

func flush(w io.Writer) error {
	if rw, ok := w.(http.ResponseWriter); ok {
		// ResponseController also finds Flush behind wrappers (Unwrap).
		return http.NewResponseController(rw).Flush()
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	return nil
}
