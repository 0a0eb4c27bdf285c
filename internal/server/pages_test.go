package server

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"testing"

	"github.com/keyholder/keyholder/internal/store/storetest"
	"github.com/keyholder/keyholder/pkg/api"
)

// TestListPages: every list route serves pages of limit rows whose
// next_cursor leads through the whole list, the last page has no cursor,
// a request without limit is the whole list as before pages, and a bad
// limit or cursor is a 400 naming the parameter.
func TestListPages(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newEnv(t, b, nil)
			dev := e.newUser("alice")
			e.newUser("bob")
			e.newUser("carol")
			lab := e.newParty("lab")
			e.newParty("bank")
			for i := range 3 {
				e.submit(lab, dev.user, fmt.Appendf(nil, "record %d", i))
			}
			type page struct {
				ids  []string
				next string
			}
			routes := []struct {
				path, token string
				read        func(data []byte) page
				want        int
			}{
				{api.PathPartyRecords, lab.token, decodePage(func(l api.RecordList) page {
					return page{idsOf(l.Records, func(r api.Record) string { return r.ID }), l.NextCursor}
				}), 3},
				{api.PathDeviceRecords, dev.token, decodePage(func(l api.RecordList) page {
					return page{idsOf(l.Records, func(r api.Record) string { return r.ID }), l.NextCursor}
				}), 3},
				{api.PathDeviceRequests, dev.token, decodePage(func(l api.RequestList) page {
					return page{idsOf(l.Requests, func(r api.RequestSummary) string { return r.ID }), l.NextCursor}
				}), 3},
				{api.PathAdminUsers, testAdminToken, decodePage(func(l api.UserList) page {
					return page{idsOf(l.Users, func(u api.User) string { return u.ID }), l.NextCursor}
				}), 3},
				{api.PathAdminParties, testAdminToken, decodePage(func(l api.PartyList) page {
					return page{idsOf(l.Parties, func(p api.Party) string { return p.ID }), l.NextCursor}
				}), 2},
				{api.PathPartyGrants, lab.token, decodePage(func(l api.GrantList) page {
					return page{idsOf(l.Grants, func(g api.Grant) string { return g.ID }), l.NextCursor}
				}), 0},
				{api.PathDeviceGrants, dev.token, decodePage(func(l api.GrantList) page {
					return page{idsOf(l.Grants, func(g api.Grant) string { return g.ID }), l.NextCursor}
				}), 0},
			}
			for _, r := range routes {
				whole := r.read(e.call("GET", r.path, r.token, nil, 200, nil))
				if len(whole.ids) != r.want || whole.next != "" {
					t.Fatalf("%s: %d rows, next %q; want %d and no next", r.path, len(whole.ids), whole.next, r.want)
				}
				var got []string
				cursor := ""
				for range r.want + 1 {
					p := api.Page{Limit: 1, Cursor: cursor}
					pg := r.read(e.call("GET", p.Query(r.path), r.token, nil, 200, nil))
					if len(pg.ids) > 1 {
						t.Fatalf("%s: a page of %d rows with limit 1", r.path, len(pg.ids))
					}
					got = append(got, pg.ids...)
					if cursor = pg.next; cursor == "" {
						break
					}
				}
				if !slices.Equal(got, whole.ids) || cursor != "" {
					t.Errorf("%s in pages of 1: %v (next %q); want %v", r.path, got, cursor, whole.ids)
				}
				for _, bad := range []string{"limit=0", "limit=1001", "limit=x", "cursor=nope", "cursor=" + url.QueryEscape("a b")} {
					resp, data := e.do("GET", r.path+"?"+bad, r.token, nil)
					if p := e.wantProblem(resp, data, 400); p.Detail == "" {
						t.Errorf("%s?%s: a 400 that does not say why", r.path, bad)
					}
				}
			}
		})
	}
}

func decodePage[L, P any](f func(L) P) func([]byte) P {
	return func(data []byte) P {
		var l L
		if err := json.Unmarshal(data, &l); err != nil {
			panic(err)
		}
		return f(l)
	}
}

func idsOf[T any](xs []T, id func(T) string) []string {
	var out []string
	for _, x := range xs {
		out = append(out, id(x))
	}
	return out
}
