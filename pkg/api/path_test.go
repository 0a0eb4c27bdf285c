package api

import (
	"strings"
	"testing"
)

func TestPath(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ route, want string }{
		{PathRecord, "/v1/records/" + id},
		{PathRecordAccess, "/v1/records/" + id + "/access"},
		{PathAdminUserCodes, "/v1/admin/users/" + id + "/enrollment-codes"},
		{PathDeviceRequests, "/v1/device/requests"},
	} {
		if got := Path(tc.route, id); got != tc.want {
			t.Errorf("Path(%q) = %q, want %q", tc.route, got, tc.want)
		}
	}
	// Filling a route costs the new string only (it used to compile a
	// regexp per call).
	var sink string
	if n := testing.AllocsPerRun(100, func() { sink = Path(PathRecordGrant, id) }); n > 1 {
		t.Errorf("Path allocates %.0f times per call", n)
	}
	_ = sink
}

// TestRoutesAreNeutral: routes use "{id}", not a router's own syntax.
func TestRoutesAreNeutral(t *testing.T) {
	for _, r := range []string{PathAdminUserCodes, PathAdminUserReset, PathAdminUserDevices, PathLinkRequest,
		PathDeviceLink, PathDeviceRequest, PathDeviceApprove, PathDeviceReject, PathDeviceGrant, PathDeviceRefuse,
		PathDeviceRevokeGrant, PathUserKeys, PathUserRecords, PathRecord, PathRecordAccess, PathRecordContent,
		PathRecordGrant, PathPartyRequest} {
		if strings.Contains(r, ":") || !strings.Contains(r, "/{id}") {
			t.Errorf("route %q: want a {id} parameter and no ':'", r)
		}
	}
}

func TestProblemError(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		want string
	}{
		{Problem{Status: 404, Title: "Not found", Detail: "record not found"}, "server: Not found: record not found (HTTP 404)"},
		{Problem{Status: 401, Title: "Unauthorized"}, "server: Unauthorized (HTTP 401)"},
		{Problem{Status: 503}, "server: Service Unavailable (HTTP 503)"},
	} {
		if got := tc.p.Error(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.p, got, tc.want)
		}
	}
}
