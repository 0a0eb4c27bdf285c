package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/keyholder/keyholder/internal/store"
	"github.com/keyholder/keyholder/pkg/envelope"
)

// cmdOperator plays an operator who has the database and the blob
// directory (and the admin token, which the scripts use through
// keyholderd admin): what it does here, it does behind the server's back.
//
//	operator swap-key-packets DB FROM TO   copy record FROM's key packets onto
//	                                       record TO's rows (same recipient)
//	operator key-packets DB RECORD OUT     write RECORD's key packets, as stored
//	operator data-packet OUT               write a fresh compat data packet
//	                                       (sealed to a throwaway key)
func cmdOperator(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: operator swap-key-packets|key-packets|data-packet ...")
	}
	ctx := context.Background()
	openDB := func(path string) *store.Store {
		st, err := store.Open(ts.MkAbs(path), store.Options{})
		ts.Check(err)
		return st
	}
	packets := func(st *store.Store, rec string) []store.RecordKeyPacket {
		var kps []store.RecordKeyPacket
		ts.Check(st.DB(ctx).Where("record_id = ?", rec).Order("id").Find(&kps).Error)
		if len(kps) == 0 {
			ts.Fatalf("record %s has no key packets", rec)
		}
		return kps
	}
	switch args[0] {
	case "swap-key-packets":
		if len(args) != 4 {
			ts.Fatalf("usage: operator swap-key-packets DB FROM TO")
		}
		st := openDB(args[1])
		defer st.Close()
		from, to := packets(st, args[2]), packets(st, args[3])
		n := 0
		for _, f := range from {
			for _, t := range to {
				if f.Fingerprint == t.Fingerprint {
					ts.Check(st.DB(ctx).Model(&store.RecordKeyPacket{}).Where("id = ?", t.ID).Update("packet", f.Packet).Error)
					n++
				}
			}
		}
		if n == 0 {
			ts.Fatalf("no key packet of %s has a recipient in common with %s", args[2], args[3])
		}
		ts.Logf("operator: copied %d key packet(s) of record %s onto record %s", n, args[2], args[3])
	case "key-packets":
		if len(args) != 4 {
			ts.Fatalf("usage: operator key-packets DB RECORD OUT")
		}
		st := openDB(args[1])
		defer st.Close()
		var out bytes.Buffer
		for _, kp := range packets(st, args[2]) {
			out.Write(kp.Packet)
		}
		ts.Check(os.WriteFile(ts.MkAbs(args[3]), out.Bytes(), 0o644))
	case "data-packet":
		if len(args) != 2 {
			ts.Fatalf("usage: operator data-packet OUT")
		}
		k, err := envelope.GenerateKey("throwaway")
		ts.Check(err)
		var msg bytes.Buffer
		w, err := envelope.Seal(&msg, envelope.Compat, k)
		ts.Check(err)
		_, err = w.Write([]byte("Lunch menu: soup of the day"))
		ts.Check(err)
		ts.Check(w.Close())
		m, err := envelope.Split(&msg)
		ts.Check(err)
		data, err := io.ReadAll(m.Data)
		ts.Check(err)
		ts.Check(os.WriteFile(ts.MkAbs(args[1]), data, 0o644))
	case "extend-grants":
		// The operator moves every grant of RECORD a year later in its
		// stored statement, leaving the device's signature as it was.
		if len(args) != 3 {
			ts.Fatalf("usage: operator extend-grants DB RECORD")
		}
		st := openDB(args[1])
		defer st.Close()
		var grants []store.Grant
		ts.Check(st.DB(ctx).Where("record_id = ?", args[2]).Find(&grants).Error)
		if len(grants) == 0 {
			ts.Fatalf("record %s has no grants", args[2])
		}
		for _, g := range grants {
			forged := regexp.MustCompile(`(?m)^expires: (\d{4})`).ReplaceAllStringFunc(string(g.Statement), func(m string) string {
				y, _ := strconv.Atoi(m[len(m)-4:])
				return fmt.Sprintf("expires: %d", y+1)
			})
			ts.Check(st.DB(ctx).Model(&store.Grant{}).Where("id = ?", g.ID).Update("statement", []byte(forged)).Error)
		}
	default:
		ts.Fatalf("operator: unknown action %q", args[0])
	}
}
