package server

import "testing"

func TestEchoPath(t *testing.T) {
	for _, tc := range []struct{ route, want string }{
		{"/healthz", "/healthz"},
		{"/v1/records/{id}", "/v1/records/:id"},
		{"/v1/records/{id}/access", "/v1/records/:id/access"},
		{"/v1/a/{x}/b/{y}", "/v1/a/:x/b/:y"},
		{"/v1/odd}/{id}", "/v1/odd}/:id"},
	} {
		if got := echoPath(tc.route); got != tc.want {
			t.Errorf("echoPath(%q) = %q, want %q", tc.route, got, tc.want)
		}
	}
}
