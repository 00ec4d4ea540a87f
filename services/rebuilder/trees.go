package rebuilder

import (
	"context"
	"errors"
	"fmt"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/registry"
)

// LayerTrees keeps the overlay builder's base layer trees in the layer-trees KV bucket, by layer digest, so
// that every replica reads each base layer once.
// A tree is stored as the cache's bytes (gzipped JSON), not as a message.
func LayerTrees(kv *bus.KV) registry.TreeCache { return layerTrees{kv: kv} }

type layerTrees struct{ kv *bus.KV }

func (l layerTrees) Get(ctx context.Context, digest string) ([]byte, bool, error) {
	e, err := l.kv.GetBytes(ctx, event.Key(digest))
	if errors.Is(err, bus.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the tree of layer %s: %w", digest, err)
	}
	return e.Value, true, nil
}

func (l layerTrees) Put(ctx context.Context, digest string, data []byte) error {
	if _, err := l.kv.PutBytes(ctx, event.Key(digest), data); err != nil {
		return fmt.Errorf("keeping the tree of layer %s (%d bytes): %w", digest, len(data), err)
	}
	return nil
}
