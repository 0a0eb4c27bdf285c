package server

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/keyholder/keyholder/internal/blob"
	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
)

// openAPIPath is docs/openapi.yaml, relative to this package.
var openAPIPath = filepath.Join("..", "..", "docs", "openapi.yaml")

// openAPIMethods are the operation keys of an OpenAPI path item.
var openAPIMethods = map[string]bool{
	"get": true, "put": true, "post": true, "delete": true,
	"options": true, "head": true, "patch": true, "trace": true,
}

// echoParam matches echo's ":name" path parameters.
var echoParam = regexp.MustCompile(`:([A-Za-z_][A-Za-z0-9_]*)`)

// docParam matches OpenAPI's "{name}" path parameters.
var docParam = regexp.MustCompile(`\{([^}/]+)\}`)

// openAPIServer builds the real server (SQLite, temporary blob store) so
// its echo router can be listed and probed.
func openAPIServer(t *testing.T) *Server {
	t.Helper()
	st := storetest.Open(t, storetest.Backends()[0], nil)
	blobs, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.AdminToken = "openapi-test-admin-token"
	cfg.DisableSweep = true
	cfg.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	s := New(cfg, st, blobs, nil, nil)
	s.MountLog(http.NotFoundHandler()) // the log's routes (internal/translog answers them)
	return s
}

// loadOpenAPI parses docs/openapi.yaml into generic maps.
func loadOpenAPI(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(openAPIPath)
	if err != nil {
		t.Fatalf("reading %s: %v", openAPIPath, err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("parsing %s: %v", openAPIPath, err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1") {
		t.Fatalf("%s: openapi version %q, want 3.1.x", openAPIPath, v)
	}
	return doc
}

// asMap returns v as a map with string keys (YAML keys such as 200 may
// decode as integers).
func asMap(v any) map[string]any {
	switch m := v.(type) {
	case map[string]any:
		return m
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, x := range m {
			out[fmt.Sprint(k)] = x
		}
		return out
	}
	return nil
}

// registeredRoutes returns "METHOD /path" (OpenAPI path syntax) for every
// route the server registers, skipping echo-internal entries such as
// RouteNotFound handlers (their method is not an HTTP method).
func registeredRoutes(s *Server) map[string]bool {
	out := map[string]bool{}
	for _, r := range s.Echo().Routes() {
		if !openAPIMethods[strings.ToLower(r.Method)] {
			continue
		}
		path := echoParam.ReplaceAllString(r.Path, "{$1}")
		// The tiles' wildcard is one path parameter in the document.
		path = strings.Replace(path, "/log/tile/*", "/log/tile/{tile}", 1)
		out[r.Method+" "+path] = true
	}
	return out
}

// documentedOps returns "METHOD /path" → operation for every operation in
// the document's paths.
func documentedOps(t *testing.T, doc map[string]any) map[string]map[string]any {
	t.Helper()
	paths := asMap(doc["paths"])
	if len(paths) == 0 {
		t.Fatalf("%s has no paths", openAPIPath)
	}
	out := map[string]map[string]any{}
	for path, item := range paths {
		for key, op := range asMap(item) {
			if !openAPIMethods[key] {
				continue // parameters, summary, description, servers
			}
			out[strings.ToUpper(key)+" "+path] = asMap(op)
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestOpenAPIRoutes checks that docs/openapi.yaml and the router agree in
// both directions: every registered route is documented, and every
// documented operation is registered.
func TestOpenAPIRoutes(t *testing.T) {
	s := openAPIServer(t)
	doc := loadOpenAPI(t)
	routes := registeredRoutes(s)
	ops := documentedOps(t, doc)
	if len(routes) == 0 {
		t.Fatal("the server registers no routes")
	}
	for _, r := range sortedKeys(routes) {
		if ops[r] == nil {
			t.Errorf("route %s is registered by the server but missing from %s", r, openAPIPath)
		}
	}
	for _, op := range sortedKeys(ops) {
		if !routes[op] {
			t.Errorf("operation %s is in %s but the server does not register it", op, openAPIPath)
		}
	}
}

// TestOpenAPIOperations checks each documented operation for what drifts
// silently: path parameters, responses, and whether it needs a token.
func TestOpenAPIOperations(t *testing.T) {
	s := openAPIServer(t)
	doc := loadOpenAPI(t)
	checkRefs(t, doc)
	params := asMap(asMap(doc["components"])["parameters"])
	schemes := asMap(asMap(doc["components"])["securitySchemes"])
	routes := registeredRoutes(s)
	ops := documentedOps(t, doc)
	for _, key := range sortedKeys(ops) {
		op := ops[key]
		method, path, _ := strings.Cut(key, " ")

		// Every {param} in the path is declared as a path parameter, and
		// no other path parameter is.
		want := map[string]bool{}
		for _, m := range docParam.FindAllStringSubmatch(path, -1) {
			want[m[1]] = true
		}
		got := map[string]bool{}
		for _, p := range asSlice(op["parameters"]) {
			pm := asMap(p)
			if ref, ok := pm["$ref"].(string); ok {
				pm = asMap(params[strings.TrimPrefix(ref, "#/components/parameters/")])
			}
			if pm["in"] == "path" {
				name, _ := pm["name"].(string)
				got[name] = true
			}
		}
		for name := range want {
			if !got[name] {
				t.Errorf("%s: path parameter {%s} is not declared", key, name)
			}
		}
		for name := range got {
			if !want[name] {
				t.Errorf("%s: declares path parameter %q that is not in the path", key, name)
			}
		}

		responses := asMap(op["responses"])
		if len(responses) == 0 {
			t.Errorf("%s: no responses documented", key)
		}
		// An operation without its own security inherits the document's.
		security, ok := op["security"]
		if !ok {
			security = doc["security"]
		}
		var secured bool
		for _, req := range asSlice(security) {
			for name := range asMap(req) {
				secured = true
				if schemes[name] == nil {
					t.Errorf("%s: unknown security scheme %q", key, name)
				}
			}
		}

		if !routes[key] {
			continue // reported by TestOpenAPIRoutes
		}
		// Probe the route without credentials: a 401 means it needs a
		// token, and then the document must say so (and document the 401).
		probe := docParam.ReplaceAllString(path, "0123456789abcdef0123456789abcdef")
		req := httptest.NewRequest(method, probe, nil)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		needsToken := rec.Code == http.StatusUnauthorized
		switch {
		case needsToken && !secured:
			t.Errorf("%s: the server answers 401 without a token but the document declares no security", key)
		case !needsToken && secured:
			t.Errorf("%s: the document declares security but the server answers %d without a token", key, rec.Code)
		}
		if needsToken && responses["401"] == nil {
			t.Errorf("%s: needs a token but documents no 401 response", key)
		}
	}
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// checkRefs fails for every local $ref that does not resolve.
func checkRefs(t *testing.T, doc map[string]any) {
	t.Helper()
	var walk func(v any, at string)
	walk = func(v any, at string) {
		switch x := v.(type) {
		case []any:
			for i, e := range x {
				walk(e, fmt.Sprintf("%s[%d]", at, i))
			}
		case map[string]any, map[any]any:
			m := asMap(x)
			if ref, ok := m["$ref"].(string); ok {
				if !resolves(doc, ref) {
					t.Errorf("%s: $ref %q does not resolve", at, ref)
				}
			}
			for k, e := range m {
				walk(e, at+"/"+k)
			}
		}
	}
	walk(doc, "#")
}

func resolves(doc map[string]any, ref string) bool {
	if !strings.HasPrefix(ref, "#/") {
		return false
	}
	var cur any = doc
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		part = strings.NewReplacer("~1", "/", "~0", "~").Replace(part)
		m := asMap(cur)
		if m == nil {
			return false
		}
		next, ok := m[part]
		if !ok {
			return false
		}
		cur = next
	}
	return true
}

// TestOpenAPIProblemTypes checks the table of problem types in the Problem
// schema against api.ProblemStatus, both ways.
func TestOpenAPIProblemTypes(t *testing.T) {
	doc := loadOpenAPI(t)
	schema := asMap(asMap(asMap(doc["components"])["schemas"])["Problem"])
	desc, _ := schema["description"].(string)
	row := regexp.MustCompile(`(?m)^\|([^|]*)\|\s*(\d{3})\s*\|$`)
	name := regexp.MustCompile("`([a-z-]+)`")
	documented := map[string]int{}
	for _, m := range row.FindAllStringSubmatch(desc, -1) {
		var status int
		fmt.Sscan(m[2], &status)
		for _, n := range name.FindAllStringSubmatch(m[1], -1) {
			documented["https://keyholder.dev/problems/"+n[1]] = status
		}
	}
	checkProblemTable(t, openAPIPath, documented)
}

// checkProblemTable compares a document's table of problem types and
// their statuses with api.ProblemStatus, both ways.
func checkProblemTable(t *testing.T, doc string, documented map[string]int) {
	t.Helper()
	for _, typ := range api.ProblemTypes() {
		if documented[typ] != api.ProblemStatus(typ) {
			t.Errorf("%s: problem type %s documented with status %d, sent with %d", doc, typ, documented[typ], api.ProblemStatus(typ))
		}
	}
	for typ := range documented {
		if api.ProblemStatus(typ) == 0 {
			t.Errorf("%s documents problem type %s, which does not exist", doc, typ)
		}
	}
}

// TestOperationsStatusTable: docs/operations.md lists every problem type,
// with the status it is sent with, in its table of statuses.
func TestOperationsStatusTable(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| (\\d{3}) \\| `([a-z-]+)` \\|")
	documented := map[string]int{}
	for _, m := range row.FindAllStringSubmatch(string(data), -1) {
		var status int
		fmt.Sscan(m[1], &status)
		documented["https://keyholder.dev/problems/"+m[2]] = status
	}
	checkProblemTable(t, "docs/operations.md", documented)
}
