package api

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestCheckJSON(t *testing.T) {
	ok := []string{
		`{}`, `[]`, `1`, `"x"`, `null`, ` {"a":1} `, "{\"a\":1}\n",
		`{"a":1,"b":2}`,
		`{"a":{"a":1},"b":[{"a":1},{"a":2}]}`, // the same key in different objects
		`[{"k":1},{"k":1}]`,
		`{"a":[1,2,{"b":{"c":[]}}],"c":"a"}`, // a value equal to a key
		`{"a":1e400}`,                        // syntax only: no range check
		`{"ǅ":1,"x":{"ǅ":2}}`,
	}
	for _, s := range ok {
		if err := CheckJSON([]byte(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	dups := []struct{ in, msg string }{
		{`{"content_type":"a/b","content_type":"c/d"}`, `duplicate key "content_type"`},
		{`{"a":1,"b":2,"a":3}`, `duplicate key "a"`},
		{`{"a":1,"\u0061":2}`, `duplicate key "a"`},
		{`{"size":1,"Size":2}`, `duplicate key "Size" (the same as "size" when letter case is ignored)`},
		{`{"k":1,"K":2}`, `duplicate key "K" (the same as "k" when letter case is ignored)`},
		{`{"ſ":1,"S":2}`, `duplicate key "S" (the same as "ſ" when letter case is ignored)`}, // encoding/json folds ſ to S
		{`{"x":{"y":[0,{"z":1,"z":2}]}}`, `duplicate key "z" in the object at "/x/y/1"`},
		{`[{"a":1},{"b":{"c":1,"c":1}}]`, `duplicate key "c" in the object at "/1/b"`},
		{`{"a/b":{"q":1,"q":2}}`, `duplicate key "q" in the object at "/a~1b"`},
		{`{"a":{},"a":{}}`, `duplicate key "a"`},
		{`{"` + strings.Repeat("k", 100) + `":1,"` + strings.Repeat("k", 100) + `":2}`, `duplicate key "` + strings.Repeat("k", 48) + `"…`},
	}
	for _, c := range dups {
		err := CheckJSON([]byte(c.in))
		var de *DuplicateKeyError
		if !errors.As(err, &de) || err.Error() != c.msg {
			t.Errorf("%s: %v, want %s", c.in, err, c.msg)
		}
	}
	bad := []struct {
		in   string
		want error
	}{
		{``, io.ErrUnexpectedEOF},
		{`  `, io.ErrUnexpectedEOF},
		{`{"a":`, io.ErrUnexpectedEOF},
		{`{"a":1}{}`, ErrTrailingData},
		{`{"a":1} x`, ErrTrailingData},
		{`[1,2] 3`, ErrTrailingData},
	}
	for _, c := range bad {
		if err := CheckJSON([]byte(c.in)); !errors.Is(err, c.want) {
			t.Errorf("%q: %v, want %v", c.in, err, c.want)
		}
	}
	for _, s := range []string{`{"a" 1}`, `{a:1}`, `{"a":1,}`, `[1,,2]`, `{"a":tru}`, `}`} {
		var se *json.SyntaxError
		if err := CheckJSON([]byte(s)); !errors.As(err, &se) {
			t.Errorf("%s: %v (%T), want a syntax error", s, err, err)
		}
	}
	deep := strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1)
	if err := CheckJSON([]byte(deep)); err == nil {
		t.Error("nesting deeper than maxJSONDepth passed")
	}
	if err := CheckJSON([]byte(strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth))); err != nil {
		t.Errorf("nesting of maxJSONDepth: %v", err)
	}
}

// TestCheckJSONMatchesDecoding: where CheckJSON finds keys equal when case
// is ignored, encoding/json really does set one field from both.
func TestCheckJSONMatchesDecoding(t *testing.T) {
	var v struct {
		ContentType string `json:"content_type"`
	}
	in := `{"content_type":"text/plain","CONTENT_TYPE":"text/html"}`
	if err := json.Unmarshal([]byte(in), &v); err != nil || v.ContentType != "text/html" {
		t.Fatalf("encoding/json: %v %q", err, v.ContentType)
	}
	if err := CheckJSON([]byte(in)); err == nil {
		t.Fatal("accepted")
	}
}
