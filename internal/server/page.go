package server

import (
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/api"
)

// pageOf reads the page a list request asks for (api.Page): limit, 1 to
// api.MaxPageSize (default api.DefaultPageSize), and cursor, the
// next_cursor of the page before.
func pageOf(c echo.Context) (store.Page, error) {
	p := store.Page{Limit: api.DefaultPageSize}
	if v := c.QueryParam(api.QueryLimit); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > api.MaxPageSize {
			return p, badRequest("limit must be a whole number from 1 to " + strconv.Itoa(api.MaxPageSize))
		}
		p.Limit = n
	}
	if v := c.QueryParam(api.QueryCursor); v != "" {
		cur, err := store.ParseCursor(v)
		if err != nil {
			return p, badRequest("cursor must be the next_cursor of a page of this list")
		}
		p.After = cur
	}
	return p, nil
}

// nextCursor is the next_cursor of a page whose store cursor is next.
func nextCursor(next *store.Cursor) string {
	if next == nil {
		return ""
	}
	return next.String()
}
