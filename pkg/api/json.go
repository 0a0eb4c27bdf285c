package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DuplicateKeyError reports a key that occurs twice in one JSON object.
type DuplicateKeyError struct {
	// Key is the repeated key (the later occurrence, unescaped).
	Key string
	// Other is the earlier key when the two differ in letter case only.
	Other string
	// Path locates the object, as a JSON Pointer (RFC 6901); empty for
	// the top-level object.
	Path string
}

func (e *DuplicateKeyError) Error() string {
	msg := "duplicate key " + quoteKey(e.Key)
	if e.Other != e.Key {
		msg += " (the same as " + quoteKey(e.Other) + " when letter case is ignored)"
	}
	if e.Path != "" {
		msg += " in the object at " + quoteKey(e.Path)
	}
	return msg
}

// quoteKey quotes s, cut to 48 bytes, so that an error names a key without
// echoing a long input.
func quoteKey(s string) string {
	if len(s) <= 48 {
		return strconv.Quote(s)
	}
	cut := 48
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + "…"
}

// ErrTrailingData: something other than white space follows the JSON value.
var ErrTrailingData = errors.New("data after the JSON value")

// maxJSONDepth bounds the nesting of arrays and objects CheckJSON accepts;
// no body of the API comes near it.
const maxJSONDepth = 64

// CheckJSON reports whether data is exactly one JSON value (white space
// around it allowed) in which no object has the same key twice, at any
// depth. Keys are compared after unescaping ("\u0061" is "a") and, because
// encoding/json matches struct fields without regard to letter case, also
// case-insensitively: {"size":1,"Size":2} is refused like {"size":1,"size":2}.
// A body with a repeated key means one thing to a parser that keeps the
// first value and another to one that keeps the last; the server and the
// device must never see different records in the same bytes.
//
// The error is a *json.SyntaxError for malformed JSON, io.ErrUnexpectedEOF
// for empty or truncated input, a *DuplicateKeyError, ErrTrailingData, or
// another error describing the problem.
func CheckJSON(data []byte) error {
	type frame struct {
		object  bool
		wantKey bool              // the next string token is a key
		keys    map[string]string // folded key → key as first seen
		name    string            // the frame's JSON Pointer token in its parent
		next    int               // the next array index
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // check the syntax only; never fail on a number's range
	var stack []frame
	var lastKey string
	// value is called as a value starts; it returns its pointer token.
	value := func() string {
		if len(stack) == 0 {
			return ""
		}
		top := &stack[len(stack)-1]
		if top.object {
			return pointerEscaper.Replace(lastKey)
		}
		top.next++
		return strconv.Itoa(top.next - 1)
	}
	// done is called as a value ends: an enclosing object wants a key.
	done := func() {
		if len(stack) > 0 && stack[len(stack)-1].object {
			stack[len(stack)-1].wantKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if len(stack) == maxJSONDepth {
					return fmt.Errorf("JSON nested deeper than %d levels", maxJSONDepth)
				}
				stack = append(stack, frame{object: t == '{', wantKey: t == '{', name: value()})
			default:
				stack = stack[:len(stack)-1]
				done()
			}
		case string:
			if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
				f := &stack[n-1]
				folded := foldKey(t)
				if prev, dup := f.keys[folded]; dup {
					var path strings.Builder
					for _, g := range stack[1:] {
						path.WriteString("/" + g.name)
					}
					return &DuplicateKeyError{Key: t, Other: prev, Path: path.String()}
				}
				if f.keys == nil {
					f.keys = map[string]string{}
				}
				f.keys[folded] = t
				f.wantKey = false
				lastKey = t
				continue
			}
			value()
			done()
		default:
			value()
			done()
		}
		if len(stack) == 0 {
			break
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return ErrTrailingData
	}
	return nil
}

// pointerEscaper escapes a key as a JSON Pointer token (RFC 6901).
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// foldKey maps every key that encoding/json would match to the same struct
// field onto one string: ASCII letters upper-cased, every other rune
// replaced by the smallest rune of its Unicode simple case-folding orbit
// (as encoding/json's own foldName does).
func foldKey(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r < utf8.RuneSelf {
			if 'a' <= r && r <= 'z' {
				r -= 'a' - 'A'
			}
			b = append(b, byte(r))
			continue
		}
		for {
			r2 := unicode.SimpleFold(r)
			if r2 <= r {
				r = r2
				break
			}
			r = r2
		}
		b = utf8.AppendRune(b, r)
	}
	return string(b)
}
