package store

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"gorm.io/gorm"
)

// The schema is versioned: each file in migrations/<dialect>/ is one
// version, applied in order by goose, which keeps the applied versions in
// the table goose_db_version (on PostgreSQL in the store's schema, as the
// connection's search_path names it). The gorm tags of the models only
// describe the columns; they create nothing.
//
//go:embed migrations
var migrations embed.FS

const versionTable = "goose_db_version"

// Migration says what Migrate did.
type Migration struct {
	// Before and After are the schema versions before and after (0: an
	// empty database).
	Before, After int64
	// Adopted is set when the database was made by AutoMigrate, before
	// versions existed, and was taken on as version 1.
	Adopted bool
	// Tables is the number of Keyholder's tables after the migration.
	Tables int
}

func (m Migration) String() string {
	switch {
	case m.Adopted:
		return fmt.Sprintf("adopted the database made before versioned migrations as version 1, then migrated it to version %d", m.After)
	case m.Before == 0:
		return fmt.Sprintf("created the database: migrated from version 0 to %d (%d tables)", m.After, m.Tables)
	case m.Before != m.After:
		return fmt.Sprintf("migrated the database from version %d to %d", m.Before, m.After)
	}
	return fmt.Sprintf("the database is at version %d, up to date", m.After)
}

// Migrate brings the schema to the latest version.
func (s *Store) Migrate(ctx context.Context) error {
	_, err := s.MigrateReport(ctx)
	return err
}

// MigrateReport is Migrate, saying which version the database was at and
// is at now.
func (s *Store) MigrateReport(ctx context.Context) (Migration, error) {
	return s.migrate(ctx, 0)
}

// migrate migrates up to version (0: the latest).
func (s *Store) migrate(ctx context.Context, version int64) (Migration, error) {
	var out Migration
	p, err := s.migrator(ctx)
	if err != nil {
		return out, fmt.Errorf("store: migrating: %w", err)
	}
	m := s.db.WithContext(ctx).Migrator()
	versioned := m.HasTable(versionTable)
	if versioned {
		if out.Before, err = p.GetDBVersion(ctx); err != nil {
			return out, fmt.Errorf("store: reading the schema version: %w", err)
		}
	} else if m.HasTable(&User{}) {
		// A database AutoMigrate made before versions existed: it has the
		// tables of version 1 and no version table. Version 1 creates
		// every table and index with IF NOT EXISTS, so applying it to such
		// a database creates only what is missing, changes no table and no
		// row, and records version 1; later versions apply as usual. A
		// database older than the last AutoMigrate schema lacks columns
		// that IF NOT EXISTS would not add: refuse it rather than run on.
		if err := s.checkAdoptable(); err != nil {
			return out, err
		}
		out.Adopted = true
	}
	if version == 0 {
		_, err = p.Up(ctx)
	} else {
		_, err = p.UpTo(ctx, version)
	}
	if err != nil {
		return out, fmt.Errorf("store: migrating from version %d: %w", out.Before, err)
	}
	if out.After, err = p.GetDBVersion(ctx); err != nil {
		return out, fmt.Errorf("store: reading the schema version: %w", err)
	}
	for _, model := range allModels() {
		if m.HasTable(model) {
			out.Tables++
		}
	}
	return out, nil
}

// logEntryV1 is log_entries as version 1 made it, before the log's
// sequencing columns (version 3).
type logEntryV1 struct {
	Index uint64 `gorm:"primaryKey;autoIncrement"`
	Kind  string `gorm:"size:32;not null"`
	Leaf  []byte `gorm:"not null"`
	Time  time.Time
}

func (logEntryV1) TableName() string { return "log_entries" }

// userV1, partyV1 and recordKeyPacketV1 are their tables as version 1
// made them, before the paging and per-device indexes (version 4).
type userV1 struct {
	ID                  string `gorm:"primaryKey;size:32"`
	Handle              string `gorm:"uniqueIndex;size:128;not null"`
	CreatedAt           time.Time
	RecoveryKey         []byte
	RecoveryFingerprint string `gorm:"size:64"`
	ChainEpoch          int    `gorm:"not null;default:0"`
}

func (userV1) TableName() string { return "users" }

type partyV1 struct {
	ID          string `gorm:"primaryKey;size:32"`
	Name        string `gorm:"size:256;not null"`
	Fingerprint string `gorm:"uniqueIndex;size:64;not null"`
	PublicKey   []byte `gorm:"not null"`
	CreatedAt   time.Time
}

func (partyV1) TableName() string { return "parties" }

type recordKeyPacketV1 struct {
	ID          uint   `gorm:"primaryKey"`
	RecordID    string `gorm:"size:32;index;not null"`
	DeviceID    string `gorm:"size:32;index"`
	Recovery    bool
	Fingerprint string `gorm:"size:64;not null"`
	Packet      []byte `gorm:"not null"`
}

func (recordKeyPacketV1) TableName() string { return "record_key_packets" }

// version1Models are the tables AutoMigrate made before the schema had
// versions: what an unversioned database must hold to be adopted.
func version1Models() []any {
	return []any{&userV1{}, &EnrollmentCode{}, &Device{}, &partyV1{}, &Nonce{}, &Token{},
		&Record{}, &recordKeyPacketV1{}, &Request{}, &Grant{}, &AuditEvent{}, &logEntryV1{},
		&ChainLink{}, &PendingDevice{}}
}

// checkAdoptable reports an error naming the first column of version 1
// that an unversioned database lacks.
func (s *Store) checkAdoptable() error {
	m := s.db.Migrator()
	for _, model := range version1Models() {
		stmt := &gorm.Statement{DB: s.db}
		if err := stmt.Parse(model); err != nil {
			return err
		}
		if !m.HasTable(model) {
			continue // version 1 creates it
		}
		for _, f := range stmt.Schema.Fields {
			if f.DBName != "" && !m.HasColumn(model, f.DBName) {
				return fmt.Errorf("store: the database predates versioned migrations and lacks column %s.%s: migrate it with the keyholderd release that made it first", stmt.Schema.Table, f.DBName)
			}
		}
	}
	return nil
}

// SchemaVersion returns the database's schema version (0: never migrated).
func (s *Store) SchemaVersion(ctx context.Context) (int64, error) {
	if !s.db.WithContext(ctx).Migrator().HasTable(versionTable) {
		return 0, nil
	}
	p, err := s.migrator(ctx)
	if err != nil {
		return 0, err
	}
	return p.GetDBVersion(ctx)
}

// LatestSchemaVersion is the version Migrate brings a database to.
func LatestSchemaVersion() int64 {
	fsys, err := fs.Sub(migrations, "migrations/sqlite")
	if err != nil {
		panic(err)
	}
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil || len(names) == 0 {
		panic("store: no migrations embedded")
	}
	var v int64
	if _, err := fmt.Sscanf(names[len(names)-1], "%d_", &v); err != nil {
		panic("store: migration file " + names[len(names)-1] + " does not start with its version")
	}
	return v
}

// migrator returns the goose provider for the store's database. On
// PostgreSQL it holds an advisory lock, one per schema, while it migrates,
// so replicas starting together migrate one after the other.
func (s *Store) migrator(ctx context.Context) (*goose.Provider, error) {
	sqlDB, err := s.db.DB()
	if err != nil {
		return nil, err
	}
	dialect, dir := goose.DialectSQLite3, "migrations/sqlite"
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	if s.postgres {
		dialect, dir = goose.DialectPostgres, "migrations/postgres"
		var schema string
		if err := s.db.WithContext(ctx).Raw("SELECT current_schema()").Scan(&schema).Error; err != nil {
			return nil, err
		}
		h := fnv.New64a()
		h.Write([]byte("keyholder-migrate:" + schema))
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64())), lock.WithLockTimeout(1, 600))
		if err != nil {
			return nil, err
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	fsys, err := fs.Sub(migrations, dir)
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(dialect, sqlDB, fsys, opts...)
}
