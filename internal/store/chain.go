package store

import (
	"errors"
	"fmt"

	"gorm.io/gorm"

	"github.com/keyholder/keyholder/pkg/transparency"
)

// ErrChainMoved is returned by AppendChainLink when the chain already has
// a link at that seq: another link was appended meanwhile.
var ErrChainMoved = errors.New("store: the key chain has a link at this position already")

// Chain returns the links of the user's key chain in epoch, by seq.
func Chain(db *gorm.DB, userID string, epoch int) ([]ChainLink, error) {
	var links []ChainLink
	err := db.Where("user_id = ? AND epoch = ?", userID, epoch).Order("seq").Find(&links).Error
	return links, err
}

// HasChain reports whether the user's chain in epoch has a link.
func HasChain(db *gorm.DB, userID string, epoch int) (bool, error) {
	var n int64
	err := db.Model(&ChainLink{}).Where("user_id = ? AND epoch = ?", userID, epoch).Limit(1).Count(&n).Error
	return n > 0, err
}

// AppendChainLink stores a link at position seq of the user's chain in
// epoch and appends it, signed, to the transparency log, in the
// transaction. The caller has checked the link against the chain
// (keychain.State.Apply) under the user's lock; a link already at seq is
// ErrChainMoved.
func (t *Tx) AppendChainLink(userID string, epoch int, seq int64, statement, signature, publicKey []byte) (*ChainLink, error) {
	l := ChainLink{ID: NewID(), UserID: userID, Epoch: epoch, Seq: seq, Statement: statement, Signature: signature}
	if len(publicKey) > 0 {
		l.PublicKey = publicKey
	}
	if err := t.DB.Create(&l).Error; err != nil {
		if IsUniqueViolation(err) {
			return nil, ErrChainMoved
		}
		return nil, err
	}
	leaf, err := transparency.SignedLeaf(statement, signature)
	if err != nil {
		return nil, fmt.Errorf("store: chain link leaf: %w", err)
	}
	t.AppendLog(LogChainLink, leaf)
	return &l, nil
}
