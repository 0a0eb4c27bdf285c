package sim

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/keyholder/keyholder/internal/clihome"
	"github.com/keyholder/keyholder/pkg/api"
)

// sessionKeysFile is the device's session key index: one line per session
// key it has seen approved, "<session key id> <record id>", appended and
// synced before the approval or grant that relies on it is sent.
const sessionKeysFile = "session-keys"

// sessionKeys is the client.SessionKeyIndex of device-sim, kept in a file
// in the device home so that it outlives the process: a record whose key
// packet was copied from a record approved a year ago is still refused.
type sessionKeys struct {
	mu   sync.Mutex
	path string
	m    map[[32]byte]string
}

func loadSessionKeys(home string) (*sessionKeys, error) {
	s := &sessionKeys{path: filepath.Join(home, sessionKeysFile), m: map[[32]byte]string{}}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	// Only whole lines count: a last line without its newline was torn by
	// a crash while it was appended.
	b = b[:bytes.LastIndexByte(b, '\n')+1]
	for _, line := range strings.Split(string(b), "\n") {
		idHex, rec, ok := strings.Cut(line, " ")
		var id [32]byte
		if k, err := hex.Decode(id[:], []byte(idHex)); !ok || err != nil || k != 32 || !api.IDPattern.MatchString(rec) {
			// Blank, or torn by a crash while appending: each entry
			// starts on a fresh line, and Remember returns (so the
			// answer relying on it is sent) only after a whole line
			// is synced, so nothing that was relied on is lost here.
			continue
		}
		if _, dup := s.m[id]; !dup {
			s.m[id] = rec
		}
	}
	return s, nil
}

func (s *sessionKeys) Record(id [32]byte) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[id], nil
}

func (s *sessionKeys) Remember(id [32]byte, record string) error {
	if !api.IDPattern.MatchString(record) {
		return fmt.Errorf("session key index: %q is not a record id", record)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; ok {
		return nil
	}
	_, statErr := os.Stat(s.path)
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if errors.Is(statErr, os.ErrNotExist) {
		// A new file: its directory entry must reach the disk too.
		if err := clihome.SyncDir(filepath.Dir(s.path)); err != nil {
			f.Close()
			return err
		}
	}
	_, err = fmt.Fprintf(f, "\n%s %s\n", hex.EncodeToString(id[:]), record)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", s.path, err)
	}
	s.m[id] = record
	return nil
}
