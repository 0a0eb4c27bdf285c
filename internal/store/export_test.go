package store

import (
	"context"
	"strings"
)

// AutoMigrateLegacy makes the tables as gorm's AutoMigrate did before the
// schema had versions. The models of records, requests and grants lost
// version 1's single-column indexes in versions 9 and 10; the CREATE
// statements of their Downs put them back.
func (s *Store) AutoMigrateLegacy(ctx context.Context) error {
	db := s.db.WithContext(ctx)
	if err := db.AutoMigrate(version1Models()...); err != nil {
		return err
	}
	dir := "migrations/sqlite/"
	if s.postgres {
		dir = "migrations/postgres/"
	}
	for _, file := range []string{"00009_lean_indexes.sql", "00010_no_state_index.sql"} {
		sql, err := migrations.ReadFile(dir + file)
		if err != nil {
			return err
		}
		_, down, _ := strings.Cut(string(sql), "-- +goose Down")
		for stmt := range strings.SplitSeq(down, ";") {
			if stmt = strings.TrimSpace(stmt); strings.HasPrefix(stmt, "CREATE ") {
				if err := db.Exec(stmt).Error; err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// MigrateTo migrates up to version.
func (s *Store) MigrateTo(ctx context.Context, version int64) (Migration, error) {
	return s.migrate(ctx, version)
}

// AutoMigrateModels makes the tables the models describe today, which the
// latest version must equal.
func (s *Store) AutoMigrateModels(ctx context.Context) error {
	return s.db.WithContext(ctx).AutoMigrate(allModels()...)
}

// DownTo migrates down to version.
func (s *Store) DownTo(ctx context.Context, version int64) error {
	p, err := s.migrator(ctx)
	if err != nil {
		return err
	}
	_, err = p.DownTo(ctx, version)
	return err
}
