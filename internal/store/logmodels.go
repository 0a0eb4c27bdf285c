package store

// The transparency log's derived tables (internal/translog writes them;
// log_entries holds the leaves).

// LogHash is one stored hash of the Merkle tree, numbered as
// golang.org/x/mod/sumdb/tlog numbers them (StoredHashIndex).
type LogHash struct {
	ID   int64  `gorm:"primaryKey;autoIncrement:false"`
	Hash []byte `gorm:"not null"`
}

// LogCheckpoint is a signed tree head. Published is set once the witness
// quorum cosigned it; Note then carries the cosignatures.
type LogCheckpoint struct {
	Size      int64  `gorm:"primaryKey;autoIncrement:false"`
	Note      []byte `gorm:"not null"`
	Published bool   `gorm:"index;not null"`
}

// LogMapNode is a node of the user map (a torchwood prefix tree) as of
// tree size Version: proofs are served for the published checkpoint, which
// may be older than the newest, so nodes are versioned, not replaced.
type LogMapNode struct {
	LabelKey []byte `gorm:"primaryKey"`
	Version  int64  `gorm:"primaryKey;autoIncrement:false"`
	Node     []byte `gorm:"not null"`
}

// LogMapValue is a user history's newest value and length.
type LogMapValue struct {
	Label []byte `gorm:"primaryKey"`
	Count int64  `gorm:"not null"`
	Value []byte `gorm:"not null"`
}
