package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"gorm.io/gorm"
)

// The typed reads and writes the server's handlers use: handlers decode a
// request, call one of these, and encode the answer; the SQL stays here.

// firstWhere loads a row of T that matches where through db; ErrNotFound
// if there is none.
func firstWhere[T any](db *gorm.DB, where string, args ...any) (*T, error) {
	var v T
	if err := First(db, &v, where, args...); err != nil {
		return nil, err
	}
	return &v, nil
}

// byID loads the row of T with primary key id through db.
func byID[T any](db *gorm.DB, id string) (*T, error) { return firstWhere[T](db, "id = ?", id) }

// FindUser returns user id.
func (s *Store) FindUser(ctx context.Context, id string) (*User, error) {
	return readOne[User](ctx, s, "id = ?", id)
}

// UserByID returns user id through db: a read, or a transaction (locked
// or not).
func UserByID(db *gorm.DB, id string) (*User, error) { return byID[User](db, id) }

// FindParty returns party id.
func (s *Store) FindParty(ctx context.Context, id string) (*Party, error) {
	return readOne[Party](ctx, s, "id = ?", id)
}

// FindDevice returns device id.
func (s *Store) FindDevice(ctx context.Context, id string) (*Device, error) {
	return readOne[Device](ctx, s, "id = ?", id)
}

// FindRecord returns record id.
func (s *Store) FindRecord(ctx context.Context, id string) (*Record, error) {
	return readOne[Record](ctx, s, "id = ?", id)
}

// FindRecordWithDecider returns record id and the fingerprint of the
// device that decided it ("" while it is pending, or if that device's row
// is gone) in one read: a party's wait for a decision ends on it.
func (s *Store) FindRecordWithDecider(ctx context.Context, id string) (*Record, string, error) {
	q := s.statement(statementName("record with decider"), func() string {
		return "SELECT " + s.selectList("r", &Record{}) + ", d.fingerprint FROM " + quote(s.schemaOf(&Record{}).Table) +
			" r LEFT JOIN " + quote(s.schemaOf(&Device{}).Table) + " d ON d.id = r.decided_by WHERE r.id = ?"
	})
	var r Record
	var fpr sql.NullString
	if err := s.queryOne(ctx, append(s.into(ctx, nil, &r), &fpr), q, id); err != nil {
		return nil, "", err
	}
	return &r, fpr.String, nil
}

// FindRequest returns request id.
func (s *Store) FindRequest(ctx context.Context, id string) (*Request, error) {
	return readOne[Request](ctx, s, "id = ?", id)
}

// RecordRequest is an approval or access request read with its record,
// the party that submitted the record and the party that made the request
// (the submitter again for an approval request).
type RecordRequest struct {
	Request   Request
	Record    Record
	Submitter Party
	Requester Party
	// KeyPackets are the record's key packets in message order (none once
	// a rejected or expired record dropped them).
	KeyPackets []RecordKeyPacket
}

// FindRecordRequest returns request id with its record, parties and key
// packets in one statement (every device GET and answer starts with them);
// ErrNotFound if there is no such request, or it has no record (a device
// request).
//
// The statement is a UNION ALL of two parts: the request's row with its
// record and parties, then one row per key packet. A join would repeat the
// record (its private metadata may be 64 KiB) on every packet's row, one
// per device of the user.
func (s *Store) FindRecordRequest(ctx context.Context, id string) (*RecordRequest, error) {
	q := s.statement(statementName("record request"), func() string {
		head := s.selectList("q", &Request{}) + ", " + s.selectList("r", &Record{}) + ", " +
			s.selectList("s", &Party{}) + ", " + s.selectList("p", &Party{})
		headNulls := s.nullList(&Request{}) + ", " + s.nullList(&Record{}) + ", " + s.nullList(&Party{}) + ", " + s.nullList(&Party{})
		// The packet's id, first of its columns, after the part and the head.
		packetID := 2 + len(s.columnsOf(&Request{})) + len(s.columnsOf(&Record{})) + 2*len(s.columnsOf(&Party{}))
		return "SELECT 0, " + head + ", " + s.nullList(&RecordKeyPacket{}) +
			" FROM requests q JOIN records r ON r.id = q.record_id JOIN parties s ON s.id = r.party_id" +
			" JOIN parties p ON p.id = q.party_id WHERE q.id = ?" +
			" UNION ALL SELECT 1, " + headNulls + ", " + s.selectList("k", &RecordKeyPacket{}) +
			" FROM record_key_packets k JOIN requests q ON k.record_id = q.record_id WHERE q.id = ?" +
			" ORDER BY 1, " + strconv.Itoa(packetID)
	})
	rows, err := s.query(ctx, q, id, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out *RecordRequest
	kps := []RecordKeyPacket{}
	for rows.Next() {
		// Targets of their own for each row: gorm's setters write a
		// pointer field's value through the pointer a previous row left.
		var part int
		var rr RecordRequest
		var k RecordKeyPacket
		dst := s.into(ctx, []any{&part}, &rr.Request)
		dst = s.into(ctx, dst, &rr.Record)
		dst = s.into(ctx, dst, &rr.Submitter)
		dst = s.into(ctx, dst, &rr.Requester)
		if err := rows.Scan(s.into(ctx, dst, &k)...); err != nil {
			return nil, err
		}
		if part == 0 {
			out = &rr
		} else {
			kps = append(kps, k)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if out == nil {
		return nil, ErrNotFound
	}
	out.KeyPackets = kps
	return out, nil
}

// FindPendingDevice returns link request id.
func (s *Store) FindPendingDevice(ctx context.Context, id string) (*PendingDevice, error) {
	return byID[PendingDevice](s.DB(ctx), id)
}

// DeviceActive reports whether device id exists and is active.
func (s *Store) DeviceActive(ctx context.Context, id string) (bool, error) {
	var d Device
	err := First(s.DB(ctx).Select("id", "status"), &d, "id = ?", id)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil && d.Status == DeviceActive, err
}

// RecordFilter selects the records of a list, newest first: those of a
// user, or those a party submitted (set one of UserID and PartyID).
type RecordFilter struct {
	UserID  string
	PartyID string
	// IdempotencyKey, if set, keeps only the record uploaded with this key.
	IdempotencyKey *string
	Page
}

// maxSameSessionKey bounds the records ApprovedWithSessionKey returns:
// one is all a device needs to refuse a record.
const maxSameSessionKey = 100

// ApprovedWithSessionKey returns user's records approved with the session
// key id sessionKeyID (hex): one read of approved_session_keys' primary
// key, whose cost does not grow with the user's records, and one more per
// record found (usually none).
func (s *Store) ApprovedWithSessionKey(ctx context.Context, userID, sessionKeyID string) ([]Record, error) {
	ks, err := readRows[ApprovedSessionKey](ctx, s, "user_id = ? AND session_key_id = ?", "", maxSameSessionKey, userID, sessionKeyID)
	if err != nil {
		return nil, err
	}
	rs := make([]Record, 0, len(ks))
	for _, k := range ks {
		r, err := s.FindRecord(ctx, k.RecordID)
		if err != nil {
			return nil, err
		}
		rs = append(rs, *r)
	}
	return rs, nil
}

// ListRecords returns the page of records f selects, newest first, and
// the cursor of the next page (nil: none).
func (s *Store) ListRecords(ctx context.Context, f RecordFilter) ([]Record, *Cursor, error) {
	q, err := newestOf(s.DB(ctx), "record", f.UserID, f.PartyID, f.Page)
	if err != nil {
		return nil, nil, err
	}
	if f.IdempotencyKey != nil {
		q = q.Where("idempotency_key = ?", *f.IdempotencyKey)
	}
	var rs []Record
	if err := q.Find(&rs).Error; err != nil {
		return nil, nil, err
	}
	rs, next := cut(f.Page, rs, func(r *Record) Cursor { return Cursor{r.CreatedAt, r.ID} })
	return rs, next, nil
}

// newestOf scopes a page of a user's or a party's rows, newest first.
func newestOf(db *gorm.DB, what, userID, partyID string, p Page) (*gorm.DB, error) {
	if userID == "" && partyID == "" {
		return nil, fmt.Errorf("store: a %s list needs a user or a party", what)
	}
	if userID != "" {
		db = db.Where("user_id = ?", userID)
	}
	if partyID != "" {
		db = db.Where("party_id = ?", partyID)
	}
	return p.scope(db, true), nil
}

// GrantFilter selects the grants of a list, newest first: those on a
// user's records, or those a party holds (set one of UserID and PartyID).
type GrantFilter struct {
	UserID  string
	PartyID string
	Page
}

// ListGrants returns the page of grants f selects, newest first, and the
// cursor of the next page (nil: none).
func (s *Store) ListGrants(ctx context.Context, f GrantFilter) ([]Grant, *Cursor, error) {
	q, err := newestOf(s.DB(ctx), "grant", f.UserID, f.PartyID, f.Page)
	if err != nil {
		return nil, nil, err
	}
	var gs []Grant
	if err := q.Find(&gs).Error; err != nil {
		return nil, nil, err
	}
	gs, next := cut(f.Page, gs, func(g *Grant) Cursor { return Cursor{g.CreatedAt, g.ID} })
	return gs, next, nil
}

// DeviceFingerprints returns the fingerprints of the devices ids, by id,
// in one query (ids that name no device are left out; empty ids ignored).
func (s *Store) DeviceFingerprints(ctx context.Context, ids ...string) (map[string]string, error) {
	return fingerprints[Device](s.DB(ctx), ids)
}

// PartyFingerprints is DeviceFingerprints for parties.
func (s *Store) PartyFingerprints(ctx context.Context, ids ...string) (map[string]string, error) {
	return fingerprints[Party](s.DB(ctx), ids)
}

func fingerprints[T any](db *gorm.DB, ids []string) (map[string]string, error) {
	out := map[string]string{}
	seen := map[string]bool{}
	var want []string
	for _, id := range ids {
		if id != "" && !seen[id] {
			seen[id] = true
			want = append(want, id)
		}
	}
	if len(want) == 0 {
		return out, nil
	}
	var rows []struct{ ID, Fingerprint string }
	if err := db.Model(new(T)).Select("id", "fingerprint").Where("id IN ?", want).Scan(&rows).Error; err != nil {
		return nil, err
	}
	for _, r := range rows {
		out[r.ID] = r.Fingerprint
	}
	return out, nil
}

// OpenRequestsForDevice returns a page of the open requests of the
// device's user, unexpired at now, that the device can answer: those whose
// record holds a key packet for it, and the user's device (link) requests,
// which every active device of the user answers. Oldest first; the cursor
// of the next page is nil on the last.
//
// The cost follows the user's open requests, not its history: they come
// from idx_requests_user_state, and each is checked for the device's key
// packet through idx_record_key_packets_record_device (a "record_id IN
// (the device's records)" would read every record the device ever had).
func (s *Store) OpenRequestsForDevice(ctx context.Context, userID, deviceID string, now time.Time, p Page) ([]Request, *Cursor, error) {
	var qs []Request
	if err := openRequestsForDevice(s.DB(ctx), userID, deviceID, now, p).Find(&qs).Error; err != nil {
		return nil, nil, err
	}
	qs, next := cut(p, qs, func(r *Request) Cursor { return Cursor{r.CreatedAt, r.ID} })
	return qs, next, nil
}

// openRequestsForDevice is OpenRequestsForDevice's query on db.
func openRequestsForDevice(db *gorm.DB, userID, deviceID string, now time.Time, p Page) *gorm.DB {
	q := db.Where("user_id = ? AND state = ? AND expires_at > ?", userID, RequestOpen, now).
		Where("kind = ? OR EXISTS (SELECT 1 FROM record_key_packets k WHERE k.record_id = requests.record_id AND k.device_id = ?)",
			KindDevice, deviceID)
	return p.scope(q, false)
}

// ValidGrant returns the party's newest grant on the record that is
// neither revoked nor expired at now; ErrNotFound if it has none.
func (s *Store) ValidGrant(ctx context.Context, recordID, partyID string, now time.Time) (*Grant, error) {
	return firstWhere[Grant](s.DB(ctx).Order("created_at DESC, id"),
		"record_id = ? AND party_id = ? AND revoked_at IS NULL AND expires_at > ?", recordID, partyID, now)
}

// GrantOfRequest returns the grant that answered the access request.
func (s *Store) GrantOfRequest(ctx context.Context, requestID string) (*Grant, error) {
	return firstWhere[Grant](s.DB(ctx), "request_id = ?", requestID)
}

// NewestAccessRequest returns the party's newest access request for the
// record; ErrNotFound if it made none.
func (s *Store) NewestAccessRequest(ctx context.Context, recordID, partyID string) (*Request, error) {
	return firstWhere[Request](s.DB(ctx).Order("created_at DESC, id DESC"),
		"record_id = ? AND party_id = ? AND kind = ?", recordID, partyID, KindAccess)
}

// UserSummary is a user with the number of its active devices.
type UserSummary struct {
	User
	ActiveDevices int
}

// ListUsers returns a page of the users, oldest first, with their active
// devices counted (two queries, whatever the number of users), and the
// cursor of the next page (nil: none).
func (s *Store) ListUsers(ctx context.Context, p Page) ([]UserSummary, *Cursor, error) {
	var users []User
	if err := p.scope(s.DB(ctx), false).Find(&users).Error; err != nil {
		return nil, nil, err
	}
	users, next := cut(p, users, func(u *User) Cursor { return Cursor{u.CreatedAt, u.ID} })
	out := make([]UserSummary, len(users))
	if len(users) == 0 {
		return out, next, nil
	}
	ids := make([]string, len(users))
	for i := range users {
		ids[i] = users[i].ID
	}
	var counts []struct {
		UserID string
		N      int
	}
	if err := s.DB(ctx).Model(&Device{}).Select("user_id, count(*) as n").Where("status = ? AND user_id IN ?", DeviceActive, ids).
		Group("user_id").Scan(&counts).Error; err != nil {
		return nil, nil, err
	}
	n := map[string]int{}
	for _, x := range counts {
		n[x.UserID] = x.N
	}
	for i, u := range users {
		out[i] = UserSummary{User: u, ActiveDevices: n[u.ID]}
	}
	return out, next, nil
}

// ListParties returns a page of the parties, oldest first, and the cursor
// of the next page (nil: none).
func (s *Store) ListParties(ctx context.Context, p Page) ([]Party, *Cursor, error) {
	var ps []Party
	if err := p.scope(s.DB(ctx), false).Find(&ps).Error; err != nil {
		return nil, nil, err
	}
	ps, next := cut(p, ps, func(x *Party) Cursor { return Cursor{x.CreatedAt, x.ID} })
	return ps, next, nil
}

// ListDevices returns the user's devices, revoked ones too, oldest first.
func (s *Store) ListDevices(ctx context.Context, userID string) ([]Device, error) {
	var ds []Device
	err := s.DB(ctx).Where("user_id = ?", userID).Order("created_at, id").Find(&ds).Error
	return ds, err
}

// UserWithActiveDevices returns user id and its active devices, oldest
// first, in one read: the user and what an upload must be sealed to.
// ErrNotFound if there is no such user.
func (s *Store) UserWithActiveDevices(ctx context.Context, id string) (*User, []Device, error) {
	q := s.statement(statementName("user with active devices"), func() string {
		return "SELECT " + s.selectList("u", &User{}) + ", " + s.selectList("d", &Device{}) +
			" FROM " + quote(s.schemaOf(&User{}).Table) + " u LEFT JOIN " + quote(s.schemaOf(&Device{}).Table) +
			" d ON d.user_id = u.id AND d.status = ? WHERE u.id = ? ORDER BY d.created_at, d.id"
	})
	return withDevices[User](ctx, s, q, DeviceActive, id)
}

// UserKeys returns user id with its active devices and the links of its
// key chain's current epoch, in one read (devices and parties read them
// before every check and every seal: a device's request, GET
// /v1/device/chain and /v1/users/{id}/keys): a UNION ALL of the user's
// rows with its devices, then one row per link, so that the links are
// those of the epoch the same snapshot's user names. ErrNotFound if there
// is no such user.
func (s *Store) UserKeys(ctx context.Context, id string) (*User, []Device, []ChainLink, error) {
	q := s.statement(statementName("user keys"), func() string {
		// Output positions of the devices' and the links' sort columns.
		position := func(before int, model any, column string) string {
			for i, f := range s.columnsOf(model) {
				if f.DBName == column {
					return strconv.Itoa(before + i + 1)
				}
			}
			panic("store: no column " + column)
		}
		nu, nd := len(s.columnsOf(&User{})), len(s.columnsOf(&Device{}))
		users, devices, links := quote(s.schemaOf(&User{}).Table), quote(s.schemaOf(&Device{}).Table), quote(s.schemaOf(&ChainLink{}).Table)
		return "SELECT 0, " + s.selectList("u", &User{}) + ", " + s.selectList("d", &Device{}) + ", " + s.nullList(&ChainLink{}) +
			" FROM " + users + " u LEFT JOIN " + devices + " d ON d.user_id = u.id AND d.status = ? WHERE u.id = ?" +
			" UNION ALL SELECT 1, " + s.nullList(&User{}) + ", " + s.nullList(&Device{}) + ", " + s.selectList("l", &ChainLink{}) +
			" FROM " + links + " l JOIN " + users + " u ON l.user_id = u.id AND l.epoch = u.chain_epoch WHERE u.id = ?" +
			" ORDER BY 1, " + position(1+nu, &Device{}, "created_at") + ", " + position(1+nu, &Device{}, "id") +
			", " + position(1+nu+nd, &ChainLink{}, "seq")
	})
	rows, err := s.query(ctx, q, DeviceActive, id, id)
	if err != nil {
		return nil, nil, nil, err
	}
	defer rows.Close()
	var u *User
	ds, links := []Device{}, []ChainLink{}
	for rows.Next() {
		// Targets of their own for each row (see FindRecordRequest).
		var part int
		var ru User
		var d Device
		var l ChainLink
		dst := s.into(ctx, []any{&part}, &ru)
		dst = s.into(ctx, dst, &d)
		if err := rows.Scan(s.into(ctx, dst, &l)...); err != nil {
			return nil, nil, nil, err
		}
		switch {
		case part == 1:
			links = append(links, l)
		case u == nil:
			u = &ru
			fallthrough
		default:
			if d.ID != "" { // NULL: the user has no active device
				ds = append(ds, d)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, nil, err
	}
	if u == nil {
		return nil, nil, nil, ErrNotFound
	}
	return u, ds, links, nil
}

// RecordWithDevices returns record id and the active devices that hold one
// of its key packets (the devices that can answer a request about it), in
// one read. ErrNotFound if there is no such record.
func (s *Store) RecordWithDevices(ctx context.Context, id string) (*Record, []Device, error) {
	q := s.statement(statementName("record with devices"), func() string {
		return "SELECT " + s.selectList("r", &Record{}) + ", " + s.selectList("d", &Device{}) +
			" FROM " + quote(s.schemaOf(&Record{}).Table) + " r LEFT JOIN " + quote(s.schemaOf(&Device{}).Table) +
			" d ON d.status = ? AND d.id IN (SELECT k.device_id FROM " + quote(s.schemaOf(&RecordKeyPacket{}).Table) +
			" k WHERE k.record_id = r.id) WHERE r.id = ? ORDER BY d.created_at, d.id"
	})
	return withDevices[Record](ctx, s, q, DeviceActive, id)
}

// withDevices reads the rows of q: each a T and a device, the device's
// columns NULL when there is none. The T is the same on every row; it is
// read from the first. The devices are never nil, so that a caller can
// tell "none" from "not read". ErrNotFound if q returns no row.
func withDevices[T any](ctx context.Context, s *Store, q string, args ...any) (*T, []Device, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var first *T
	ds := []Device{}
	for rows.Next() {
		var v T
		var d Device
		if err := rows.Scan(s.into(ctx, s.into(ctx, nil, &v), &d)...); err != nil {
			return nil, nil, err
		}
		if first == nil {
			first = &v
		}
		if d.ID != "" { // NULL: no device on this row
			ds = append(ds, d)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if first == nil {
		return nil, nil, ErrNotFound
	}
	return first, ds, nil
}

// pendingExpiry and openExpiry are the keys of the sweeper's expression
// indexes (version 9): a pending record's and an open request's expiry,
// NULL for the others. The sweeper's queries (and the metrics' count of
// pending records) name them exactly as the indexes do, and no other query
// does, so that the planner cannot take
// them for a query they do not serve (a partial index on the state, taken
// for a device's open requests when the statistics predated a burst of
// open requests, read the whole burst).
const (
	pendingExpiry = "(CASE WHEN state = '" + StatePending + "' THEN expires_at END)"
	openExpiry    = "(CASE WHEN state = '" + RequestOpen + "' THEN expires_at END)"
	// pendingCount counts the pending records on their expiry index, as a
	// range from the earliest time (its argument, the zero time): every
	// other record has a NULL key there, which a range skips on both
	// databases, where SQLite reads IS NOT NULL as a scan of every key.
	// Every expiry the store writes is a UTC time at or after the zero
	// time (SQLite compares times as text, so one written in a zone west
	// of UTC at year 1 would sort below it).
	pendingCount = `SELECT count(*) FROM records WHERE ` + pendingExpiry + ` >= ?`
)

// ExpiredPendingRecords returns up to limit pending records whose pending
// life ended at now.
func (s *Store) ExpiredPendingRecords(ctx context.Context, now time.Time, limit int) ([]Record, error) {
	var rs []Record
	err := s.DB(ctx).Where(pendingExpiry+" <= ?", now).Limit(limit).Find(&rs).Error
	return rs, err
}

// --- Writes, inside Apply ---

// Insert adds the row (or the slice of rows) v.
func (t *Tx) Insert(v any) error { return t.DB.Create(v).Error }

// Record returns record id in the transaction (not locked).
func (t *Tx) Record(id string) (*Record, error) { return byID[Record](t.DB, id) }

// Request returns request id in the transaction (not locked).
func (t *Tx) Request(id string) (*Request, error) { return byID[Request](t.DB, id) }

// LockedRequest returns request id, locked for the rest of the transaction.
func (t *Tx) LockedRequest(id string) (*Request, error) { return byID[Request](t.Locked(), id) }

// LockedRecord returns record id, locked for the rest of the transaction.
func (t *Tx) LockedRecord(id string) (*Record, error) { return byID[Record](t.Locked(), id) }

// AnswerRequest records the device's answer to request id, now.
func (t *Tx) AnswerRequest(id, answer, deviceID string) error {
	return t.DB.Model(&Request{}).Where("id = ?", id).Updates(answerValues(answer, deviceID, t.Now())).Error
}

// AnswerOpenRequest queues the device's answer to request id, now, as a
// guarded update: if the request is no longer open and unexpired, or the
// device no longer active, when the writes run, Flush (or Apply) fails
// with ErrUnchanged. The device is checked in the same statement because
// the request's token may have been checked from the token cache, or
// before a revocation that commits while the request runs.
func (t *Tx) AnswerOpenRequest(id, answer, deviceID string) error {
	now := t.Now()
	return t.UpdateLater(&Request{}, id, answerValues(answer, deviceID, now),
		"state = ? AND expires_at > ? AND EXISTS (SELECT 1 FROM devices WHERE devices.id = ? AND devices.status = ?)",
		RequestOpen, now, deviceID, DeviceActive)
}

// Device returns device id as the transaction sees it.
func (t *Tx) Device(id string) (*Device, error) { return byID[Device](t.DB, id) }

func answerValues(answer, deviceID string, now time.Time) map[string]any {
	return map[string]any{"state": RequestAnswered, "answer": answer, "answered_by": deviceID, "answered_at": now}
}

// Decision is a device's signed approval or rejection of a record.
type Decision struct {
	State                string // StateApproved or StateRejected
	Statement, Signature []byte
	DeviceID             string
	// UserID and SessionKeyID (hex): an approval's user and session-key-id.
	UserID, SessionKeyID string
}

// DecidePendingRecord queues the decision on record id as a guarded
// update: if the record is no longer pending when the writes run, Flush
// (or Apply) fails with ErrUnchanged. A rejected record keeps its row
// (state, statements) as a tombstone: its ciphertext reference, key
// packets and private metadata go.
func (t *Tx) DecidePendingRecord(id string, d Decision) error {
	upd := map[string]any{"state": d.State, "decision_statement": d.Statement, "decision_signature": d.Signature,
		"decided_by": d.DeviceID, "decided_at": t.Now()}
	if d.State != StateApproved {
		upd["blob_key"] = nil
		upd["private"] = nil
	}
	if err := t.UpdateLater(&Record{}, id, upd, "state = ?", StatePending); err != nil {
		return err
	}
	if d.State == StateApproved {
		return t.InsertLater(&ApprovedSessionKey{UserID: d.UserID, SessionKeyID: d.SessionKeyID, RecordID: id})
	}
	return t.dropSecrets(id)
}

// dropSecrets queues the deletion of what a rejected or expired record no
// longer keeps: its key packets and its ciphertext if the database holds
// it.
func (t *Tx) dropSecrets(recordID string) error {
	if err := t.DeleteLater(&RecordKeyPacket{}, "record_id = ?", recordID); err != nil {
		return err
	}
	return t.DeleteLater(&InlineCiphertext{}, "record_id = ?", recordID)
}

// InlineData returns the data packet the database keeps for record id;
// ErrNotFound if its ciphertext is in the blob store (or gone).
func (s *Store) InlineData(ctx context.Context, recordID string) ([]byte, error) {
	c, err := firstWhere[InlineCiphertext](s.DB(ctx), "record_id = ?", recordID)
	if err != nil {
		return nil, err
	}
	return c.Data, nil
}

// ExpireRecord turns record id, if it is still pending and its pending
// life has ended, into an expired tombstone: its ciphertext reference,
// key packets and private metadata go, and its open requests expire. It
// returns whether it expired the record and the blob key the record held.
func (t *Tx) ExpireRecord(id string) (expired bool, blobKey *string, err error) {
	cur, err := t.LockedRecord(id)
	if err != nil {
		return false, nil, err
	}
	if cur.State != StatePending || cur.ExpiresAt.After(t.Now()) {
		return false, nil, nil // decided meanwhile: leave it alone
	}
	if err := t.DB.Model(&Record{}).Where(keyed("state = ?"), id, StatePending).
		Updates(map[string]any{"state": StateExpired, "blob_key": nil, "private": nil}).Error; err != nil {
		return false, nil, err
	}
	if err := t.dropSecrets(id); err != nil {
		return false, nil, err
	}
	if err := t.DB.Model(&Request{}).Where("record_id = ? AND state = ?", id, RequestOpen).
		Update("state", RequestExpired).Error; err != nil {
		return false, nil, err
	}
	return true, cur.BlobKey, nil
}

// ExpireStale expires the open requests and link requests past their
// expiry at now, and deletes the nonces that expired an hour before now
// and the tokens expired at now. It returns how many requests it expired.
func (t *Tx) ExpireStale(now time.Time) (requests int, err error) {
	res := t.DB.Model(&Request{}).Where(openExpiry+" <= ?", now).Update("state", RequestExpired)
	if res.Error != nil {
		return 0, res.Error
	}
	requests = int(res.RowsAffected)
	// Link requests after their requests (the order the answer routes
	// lock them in).
	if err := t.DB.Model(&PendingDevice{}).Where("state = ? AND expires_at <= ?", LinkOpen, now).
		Update("state", LinkExpired).Error; err != nil {
		return requests, err
	}
	if err := t.DB.Where("expires_at <= ?", now.Add(-time.Hour)).Delete(&Nonce{}).Error; err != nil {
		return requests, err
	}
	return requests, t.DB.Where("expires_at <= ?", now).Delete(&Token{}).Error
}

// BlobReferenced reports whether a record refers to the blob key.
func (t *Tx) BlobReferenced(key string) (bool, error) { return blobReferenced(t.DB, key) }

// BlobReferenced reports whether a record refers to the blob key.
func (s *Store) BlobReferenced(ctx context.Context, key string) (bool, error) {
	return blobReferenced(s.DB(ctx), key)
}

func blobReferenced(db *gorm.DB, key string) (bool, error) {
	var n int64
	err := db.Model(&Record{}).Where("blob_key = ?", key).Count(&n).Error
	return n > 0, err
}

// RequestByIdempotencyKey returns the access request the party made with
// the Idempotency-Key key; ErrNotFound if there is none.
func (s *Store) RequestByIdempotencyKey(ctx context.Context, partyID, key string) (*Request, error) {
	return firstWhere[Request](s.DB(ctx), "party_id = ? AND idempotency_key = ?", partyID, key)
}

// RecordByIdempotencyKey returns the record the party uploaded with the
// Idempotency-Key key; ErrNotFound if there is none.
func (s *Store) RecordByIdempotencyKey(ctx context.Context, partyID, key string) (*Record, error) {
	return firstWhere[Record](s.DB(ctx), "party_id = ? AND idempotency_key = ?", partyID, key)
}

// RevokeGrant marks grant id of the user revoked now and returns it with
// its party; ErrNotFound if the user has no such grant. A grant revoked
// already is returned unchanged with revoked false.
func (t *Tx) RevokeGrant(id, userID string) (g *Grant, p *Party, revoked bool, err error) {
	var gr Grant
	if err := First(t.Locked(), &gr, keyed("user_id = ?"), id, userID); err != nil {
		return nil, nil, false, err
	}
	if gr.RevokedAt != nil {
		return &gr, nil, false, nil
	}
	now := t.Now()
	gr.RevokedAt = &now
	if err := t.DB.Model(&Grant{}).Where("id = ?", id).Update("revoked_at", now).Error; err != nil {
		return nil, nil, false, err
	}
	p, err = byID[Party](t.DB, gr.PartyID)
	if err != nil {
		return nil, nil, false, err
	}
	return &gr, p, true, nil
}

// --- Reads through a session or a transaction ---
//
// These take a *gorm.DB because handlers run them both on a read session
// (Store.DB) and inside Apply (Tx.DB, or Tx.Locked to lock the rows).

// UserByHandle returns the user with this handle through db.
func UserByHandle(db *gorm.DB, handle string) (*User, error) {
	return firstWhere[User](db, "handle = ?", handle)
}

// EnrollmentCodeByHash returns the enrollment code whose SHA-256 is hash
// through db.
func EnrollmentCodeByHash(db *gorm.DB, hash string) (*EnrollmentCode, error) {
	return firstWhere[EnrollmentCode](db, "code_hash = ?", hash)
}

// KeyUse says which rows hold a key (by fingerprint).
type KeyUse struct {
	Party  bool // a registered party's key
	Device bool // a device's key, of any user, active or revoked
}

// KeyUseOf looks up who holds the key with fingerprint fpr through db.
func KeyUseOf(db *gorm.DB, fpr string) (KeyUse, error) {
	var out KeyUse
	var n int64
	if err := db.Model(&Party{}).Where("fingerprint = ?", fpr).Count(&n).Error; err != nil {
		return out, err
	}
	out.Party = n > 0
	if err := db.Model(&Device{}).Where("fingerprint = ?", fpr).Count(&n).Error; err != nil {
		return out, err
	}
	out.Device = n > 0
	return out, nil
}

// --- Authentication ---

// FindToken returns the bearer token whose SHA-256 is hash.
func (s *Store) FindToken(ctx context.Context, hash string) (*Token, error) {
	return firstWhere[Token](s.DB(ctx), "hash = ?", hash)
}

// FindNonce returns the challenge whose SHA-256 is hash.
func (s *Store) FindNonce(ctx context.Context, hash string) (*Nonce, error) {
	return firstWhere[Nonce](s.DB(ctx), "hash = ?", hash)
}

// DeviceByFingerprint returns the device with key fingerprint fpr.
func (s *Store) DeviceByFingerprint(ctx context.Context, fpr string) (*Device, error) {
	return firstWhere[Device](s.DB(ctx), "fingerprint = ?", fpr)
}

// PartyByFingerprint returns the party with key fingerprint fpr.
func (s *Store) PartyByFingerprint(ctx context.Context, fpr string) (*Party, error) {
	return firstWhere[Party](s.DB(ctx), "fingerprint = ?", fpr)
}

// UseNonce marks the challenge whose SHA-256 is hash used; false if it
// was used already (or is gone), so that a challenge buys one token.
func (t *Tx) UseNonce(hash string) (bool, error) {
	res := t.DB.Model(&Nonce{}).Where("hash = ? AND used = ?", hash, false).Update("used", true)
	return res.RowsAffected == 1, res.Error
}

// UseEnrollmentCode marks enrollment code id used now; false if it was
// used already.
func (t *Tx) UseEnrollmentCode(id string) (bool, error) {
	res := t.DB.Model(&EnrollmentCode{}).Where("id = ? AND used_at IS NULL", id).Update("used_at", t.Now())
	return res.RowsAffected == 1, res.Error
}

// --- Devices and link requests ---

// DevicesToNotify returns the active devices of the user, to which a
// push about a link request goes (every device of the user answers it).
// A push about a record goes to the devices its handler read with the
// record (UserWithActiveDevices, RecordWithDevices).
func (s *Store) DevicesToNotify(ctx context.Context, userID string) ([]Device, error) {
	return readRows[Device](ctx, s, "user_id = ? AND status = ?", "", 0, userID, DeviceActive)
}

// MarkPushDead records that the push provider no longer knows the
// device's token.
func (t *Tx) MarkPushDead(deviceID string) error {
	return t.DB.Model(&Device{}).Where("id = ?", deviceID).Update("push_dead", true).Error
}

// CountActiveDevices counts the user's active devices.
func (t *Tx) CountActiveDevices(userID string) (int64, error) {
	var n int64
	err := t.DB.Model(&Device{}).Where("user_id = ? AND status = ?", userID, DeviceActive).Count(&n).Error
	return n, err
}

// CountOpenLinks counts the user's link requests open and unexpired at now.
func (t *Tx) CountOpenLinks(userID string, now time.Time) (int64, error) {
	var n int64
	err := t.DB.Model(&PendingDevice{}).Where("user_id = ? AND state = ? AND expires_at > ?", userID, LinkOpen, now).Count(&n).Error
	return n, err
}

// LockedPendingDevice returns link request id, locked for the rest of the
// transaction.
func (t *Tx) LockedPendingDevice(id string) (*PendingDevice, error) {
	return byID[PendingDevice](t.Locked(), id)
}

// CloseLink sets link request id's state (LinkApproved with the device it
// created, or LinkRefused).
func (t *Tx) CloseLink(id, state, deviceID string) error {
	upd := map[string]any{"state": state}
	if deviceID != "" {
		upd["device_id"] = deviceID
	}
	return t.DB.Model(&PendingDevice{}).Where("id = ?", id).Updates(upd).Error
}

// ActiveDeviceIDs returns the ids of the user's active devices; with fpr
// set, only the one with that key fingerprint.
func (t *Tx) ActiveDeviceIDs(userID, fpr string) ([]string, error) {
	q := t.DB.Model(&Device{}).Where("user_id = ? AND status = ?", userID, DeviceActive)
	if fpr != "" {
		q = q.Where("fingerprint = ?", fpr)
	}
	var ids []string
	err := q.Pluck("id", &ids).Error
	return ids, err
}

// RevokeDevices marks the devices revoked now and deletes their tokens.
func (t *Tx) RevokeDevices(ids []string) error {
	// Other replicas hear of it through the triggers' notification; this
	// one refuses the devices' tokens as soon as the revocation commits.
	t.AfterCommit(t.s.tokens.Flush)
	if err := t.DB.Model(&Device{}).Where("id IN ?", ids).Updates(map[string]any{"status": DeviceRevoked, "revoked_at": t.Now()}).Error; err != nil {
		return err
	}
	return t.DB.Where("subject_kind = ? AND subject_id IN ?", ActorDevice, ids).Delete(&Token{}).Error
}

// SetRecoveryKey sets (or with a nil key, removes) the user's recovery key.
func (t *Tx) SetRecoveryKey(userID string, armored []byte, fpr string) error {
	var key any = armored
	if armored == nil {
		key = nil
	}
	return t.DB.Model(&User{}).Where("id = ?", userID).Updates(map[string]any{
		"recovery_key": key, "recovery_fingerprint": fpr}).Error
}

// ResetChain ends the user's key chain in the transaction: its open link
// requests (requests first, then pending devices: the order the sweeper
// and the answer routes lock them in) and unused enrollment codes expire
// now, the recovery key is cleared and the chain epoch becomes epoch. The
// caller revokes the devices.
func (t *Tx) ResetChain(userID string, epoch int) error {
	now := t.Now()
	if err := t.DB.Model(&Request{}).Where("user_id = ? AND kind = ? AND state = ?", userID, KindDevice, RequestOpen).
		Update("state", RequestExpired).Error; err != nil {
		return err
	}
	if err := t.DB.Model(&PendingDevice{}).Where("user_id = ? AND state = ?", userID, LinkOpen).
		Update("state", LinkExpired).Error; err != nil {
		return err
	}
	if err := t.DB.Model(&EnrollmentCode{}).Where("user_id = ? AND used_at IS NULL AND expires_at > ?", userID, now).
		Update("expires_at", now).Error; err != nil {
		return err
	}
	return t.DB.Model(&User{}).Where("id = ?", userID).Updates(map[string]any{
		"chain_epoch": epoch, "recovery_key": nil, "recovery_fingerprint": ""}).Error
}

// DeviceByToken returns the device a device token (whose SHA-256 is
// hash) was issued to, with the token's expiry, in one query: the token
// check of every device request. ErrNotFound if there is no such token or
// no such device (FindToken tells the two apart).
func (s *Store) DeviceByToken(ctx context.Context, hash string) (*Device, time.Time, error) {
	q := s.statement(statementName("token owner: devices"), func() string { return tokenOwnerSQL(s, "devices", &Device{}) })
	return cachedTokenOwner[Device](ctx, s, q, ActorDevice, hash)
}

// PartyByToken is DeviceByToken for party tokens.
func (s *Store) PartyByToken(ctx context.Context, hash string) (*Party, time.Time, error) {
	q := s.statement(statementName("token owner: parties"), func() string { return tokenOwnerSQL(s, "parties", &Party{}) })
	return cachedTokenOwner[Party](ctx, s, q, ActorParty, hash)
}

// cachedTokenOwner answers from the token cache when it can, and reads
// with q (tokenOwnerSQL) otherwise, caching what it read.
func cachedTokenOwner[T Device | Party](ctx context.Context, s *Store, q, kind, hash string) (*T, time.Time, error) {
	owner, exp, t, ok := get[T](s.tokens, kind, hash)
	if ok {
		return owner, exp, nil
	}
	owner = new(T)
	exp, err := s.tokenOwner(ctx, q, kind, hash, owner)
	if err == nil {
		put(s.tokens, t, kind, hash, owner, exp)
	}
	return owner, exp, err
}

// tokenOwnerSQL selects the row of owners (a table of model) that a token
// was issued to, and the token's expiry.
func tokenOwnerSQL(s *Store, owners string, model any) string {
	return "SELECT " + s.selectList("o", model) + ", t.expires_at FROM tokens t JOIN " + owners +
		" o ON o.id = t.subject_id WHERE t.hash = ? AND t.subject_kind = ?"
}

// tokenOwner reads the owner of the token of kind whose SHA-256 is hash
// into owner with q (tokenOwnerSQL), and returns the token's expiry.
func (s *Store) tokenOwner(ctx context.Context, q, kind, hash string, owner any) (time.Time, error) {
	var t Token
	dst := s.into(ctx, nil, owner)
	dst = append(dst, &fieldTarget{ctx, s.columnOf(&t, "expires_at"), reflect.ValueOf(&t).Elem()})
	err := s.queryOne(ctx, dst, q, hash, kind)
	return t.ExpiresAt, err
}
