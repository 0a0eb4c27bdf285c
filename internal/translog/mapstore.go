package translog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"filippo.io/torchwood/prefix"
	"gorm.io/gorm"

	"github.com/keyholder/keyholder/internal/store"
)

// mapStorage is a prefix.Storage over log_map_nodes as of one tree size:
// Load reads the newest version at or below view; Store keeps the nodes in
// memory until flush writes them at version view.
type mapStorage struct {
	db      *gorm.DB
	view    int64
	pending map[prefix.Label]*prefix.Node
	// cache, if set, holds the newest committed nodes (the sequencer's,
	// which reads the map as of the newest tree only); Load fills it.
	cache map[prefix.Label]*prefix.Node
}

func newMapStorage(db *gorm.DB, view int64) *mapStorage {
	return &mapStorage{db: db, view: view, pending: map[prefix.Label]*prefix.Node{}}
}

func labelKey(l prefix.Label) []byte {
	b := binary.BigEndian.AppendUint16(make([]byte, 0, 34), uint16(l.BitLen()))
	var full [32]byte
	copy(full[:], l.Bytes())
	return append(b, full[:]...)
}

func parseLabelKey(b []byte) (prefix.Label, error) {
	if len(b) != 34 {
		return prefix.Label{}, errors.New("translog: stored map label is not 34 bytes")
	}
	return prefix.NewLabel(uint32(binary.BigEndian.Uint16(b)), b[2:])
}

func encodeNode(n *prefix.Node) []byte {
	b := make([]byte, 0, 34*2+32)
	b = append(b, labelKey(n.Left)...)
	b = append(b, labelKey(n.Right)...)
	return append(b, n.Hash[:]...)
}

func decodeNode(label prefix.Label, b []byte) (*prefix.Node, error) {
	if len(b) != 34*2+32 {
		return nil, fmt.Errorf("translog: stored map node %s is %d bytes", label, len(b))
	}
	left, err := parseLabelKey(b[:34])
	if err != nil {
		return nil, err
	}
	right, err := parseLabelKey(b[34:68])
	if err != nil {
		return nil, err
	}
	n := &prefix.Node{Label: label, Left: left, Right: right}
	copy(n.Hash[:], b[68:])
	return n, nil
}

func (s *mapStorage) Load(ctx context.Context, label prefix.Label) (*prefix.Node, error) {
	if n, ok := s.pending[label]; ok {
		return n, nil
	}
	if n, ok := s.cache[label]; ok {
		return n, nil
	}
	var rows []store.LogMapNode
	err := s.db.WithContext(ctx).Where("label_key = ? AND version <= ?", labelKey(label), s.view).
		Order("version DESC").Limit(1).Find(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("translog: loading map node: %w", err)
	}
	if len(rows) == 0 {
		return nil, prefix.ErrNodeNotFound
	}
	n, err := decodeNode(label, rows[0].Node)
	if err == nil && s.cache != nil {
		s.cache[label] = n
	}
	return n, err
}

func (s *mapStorage) Store(ctx context.Context, nodes ...*prefix.Node) error {
	for _, n := range nodes {
		c := *n
		s.pending[n.Label] = &c
	}
	return nil
}

// flush writes the stored nodes at version view (once per round; the
// sequencer keeps pending for its cache after the commit).
func (s *mapStorage) flush(ctx context.Context) error {
	if len(s.pending) == 0 {
		return nil
	}
	rows := make([]store.LogMapNode, 0, len(s.pending))
	for l, n := range s.pending {
		rows = append(rows, store.LogMapNode{LabelKey: labelKey(l), Version: s.view, Node: encodeNode(n)})
	}
	if err := s.db.WithContext(ctx).CreateInBatches(rows, 200).Error; err != nil {
		return fmt.Errorf("translog: storing map nodes: %w", err)
	}
	return nil
}
