package store

import "context"

// AutoMigrateLegacy makes the tables as gorm's AutoMigrate did before the
// schema had versions.
func (s *Store) AutoMigrateLegacy(ctx context.Context) error {
	return s.db.WithContext(ctx).AutoMigrate(version1Models()...)
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
