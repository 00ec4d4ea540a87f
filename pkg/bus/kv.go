package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Errors of a KV bucket.
var (
	// ErrKeyNotFound is returned by Get and GetBytes for a key that does not exist or was deleted.
	ErrKeyNotFound = errors.New("key not found")
	// ErrRevisionMismatch is returned by Update and UpdateBytes when the key is no longer at the revision it was
	// read at: another writer changed it first. Read it again and decide again.
	ErrRevisionMismatch = errors.New("key revision mismatch")
	// ErrKeyExists is returned by Create and CreateBytes for a key that exists. Create is a compare-and-set
	// against no key, so ErrKeyExists is also an ErrRevisionMismatch.
	ErrKeyExists = fmt.Errorf("key exists%.0w", ErrRevisionMismatch)
)

// decodeOptions decode a stored value. Unknown fields are discarded: a newer replica may have written fields
// this one does not know yet, and an older replica must keep working on the fields it knows.
var decodeOptions = protojson.UnmarshalOptions{DiscardUnknown: true}

// KV is a key-value bucket (nats.go's jetstream.KeyValue underneath). Values are protobuf messages stored as
// protojson, like message bodies, so that any language can read them and fields can be added freely; the Bytes
// variants store bytes as they are. Keys are event.Key tokens. A KV is safe for concurrent use.
type KV struct {
	kv     jetstream.KeyValue
	bucket string
}

// Entry is one stored value of a bucket.
type Entry struct {
	Key      string
	Value    []byte
	Revision uint64
	Created  time.Time
	// Deleted is set on a delete seen by a watch; such an entry has no value.
	Deleted bool
}

// Decode decodes the entry's protojson value into m, discarding unknown fields.
func (e Entry) Decode(m proto.Message) error {
	if err := decodeOptions.Unmarshal(e.Value, m); err != nil {
		return fmt.Errorf("decoding %s from key %s: %w", m.ProtoReflect().Descriptor().FullName(), e.Key, err)
	}
	return nil
}

// KeyValue opens the KV bucket called bucket. The buckets are created by EnsureKeyValues; a bucket that does
// not exist is an error.
func (b *Bus) KeyValue(ctx context.Context, bucket string) (*KV, error) {
	kv, err := b.js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("opening KV bucket %s: %w", bucket, err)
	}
	return &KV{kv: kv, bucket: bucket}, nil
}

// Bucket is the bucket's name.
func (kv *KV) Bucket() string { return kv.bucket }

// Get decodes the value of key into m and returns its revision. Unknown fields are discarded. A key that does
// not exist, or was deleted, is ErrKeyNotFound; a value that does not decode is a Permanent error: reading it
// again will not help.
func (kv *KV) Get(ctx context.Context, key string, m proto.Message) (uint64, error) {
	e, err := kv.GetBytes(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := decodeOptions.Unmarshal(e.Value, m); err != nil {
		// Not e.Decode, whose error names the key too: it is named once, here.
		return 0, Permanent(fmt.Errorf("reading %s of KV bucket %s: decoding %s: %w", key, kv.bucket,
			m.ProtoReflect().Descriptor().FullName(), err))
	}
	return e.Revision, nil
}

// GetBytes returns the entry of key as stored. A key that does not exist, or was deleted, is ErrKeyNotFound.
func (kv *KV) GetBytes(ctx context.Context, key string) (Entry, error) {
	e, err := kv.kv.Get(ctx, key)
	if err != nil {
		return Entry{}, kv.err("reading", key, err)
	}
	return entry(e), nil
}

// Put stores m as the value of key, whatever is there, and returns the new revision. A message that cannot
// be encoded (a string that is not UTF-8) is a Permanent error, here and in Create and Update.
func (kv *KV) Put(ctx context.Context, key string, m proto.Message) (uint64, error) {
	data, err := encode(m)
	if err != nil {
		return 0, kv.err("writing", key, err)
	}
	return kv.PutBytes(ctx, key, data)
}

// PutBytes stores data as the value of key, whatever is there, and returns the new revision.
func (kv *KV) PutBytes(ctx context.Context, key string, data []byte) (uint64, error) {
	rev, err := kv.kv.Put(ctx, key, data)
	if err != nil {
		return 0, kv.err("writing", key, err)
	}
	return rev, nil
}

// Create stores m as the value of key only if the key does not exist (or was deleted), and returns the
// revision. A key that exists is ErrKeyExists, which is also an ErrRevisionMismatch.
func (kv *KV) Create(ctx context.Context, key string, m proto.Message) (uint64, error) {
	data, err := encode(m)
	if err != nil {
		return 0, kv.err("creating", key, err)
	}
	return kv.CreateBytes(ctx, key, data)
}

// CreateBytes is Create of data as it is.
func (kv *KV) CreateBytes(ctx context.Context, key string, data []byte) (uint64, error) {
	rev, err := kv.kv.Create(ctx, key, data)
	if err != nil {
		return 0, kv.err("creating", key, err)
	}
	return rev, nil
}

// Update stores m as the value of key only if the key is still at revision (compare-and-set), and returns the
// new revision. A key written since, or deleted, is ErrRevisionMismatch.
func (kv *KV) Update(ctx context.Context, key string, m proto.Message, revision uint64) (uint64, error) {
	data, err := encode(m)
	if err != nil {
		return 0, kv.err("updating", key, err)
	}
	return kv.UpdateBytes(ctx, key, data, revision)
}

// UpdateBytes is Update of data as it is.
func (kv *KV) UpdateBytes(ctx context.Context, key string, data []byte, revision uint64) (uint64, error) {
	rev, err := kv.kv.Update(ctx, key, data, revision)
	if err != nil {
		return 0, kv.err("updating", key, err)
	}
	return rev, nil
}

// Delete deletes key; deleting a key that does not exist is not an error.
func (kv *KV) Delete(ctx context.Context, key string) error {
	if err := kv.kv.Delete(ctx, key); err != nil {
		return kv.err("deleting", key, err)
	}
	return nil
}

// List returns the entries whose keys match pattern (wildcards * and >), in the order they were last written.
// Deleted keys are left out. ctx bounds the whole read.
func (kv *KV) List(ctx context.Context, pattern string) ([]Entry, error) {
	w, err := kv.kv.Watch(ctx, pattern, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, kv.err("listing", pattern, err)
	}
	defer func() { _ = w.Stop() }()
	var out []Entry
	for e := range w.Updates() {
		if e == nil {
			return out, nil // every stored entry has been seen
		}
		out = append(out, entry(e))
	}
	// The watch ended before it had seen every entry: ctx ended, or the connection closed.
	return nil, kv.err("listing", pattern, errors.Join(errors.New("watch ended early"), ctx.Err()))
}

// Watch watches key for changes made after the call: each new value, and deletes (Entry.Deleted), in order.
// The watch ends, and Updates is closed, when ctx ends, when Stop is called, or when the connection closes;
// a caller that still cares watches again.
func (kv *KV) Watch(ctx context.Context, key string) (*KeyWatcher, error) {
	w, err := kv.kv.Watch(ctx, key, jetstream.UpdatesOnly())
	if err != nil {
		return nil, kv.err("watching", key, err)
	}
	kw := &KeyWatcher{w: w, updates: make(chan Entry), stop: make(chan struct{})}
	go kw.forward()
	return kw, nil
}

// KeyWatcher is a watch of one key (see KV.Watch).
type KeyWatcher struct {
	w       jetstream.KeyWatcher
	updates chan Entry
	stop    chan struct{}
	once    sync.Once
	err     error
}

// Updates delivers the changes of the key; it is closed when the watch ends.
func (kw *KeyWatcher) Updates() <-chan Entry { return kw.updates }

// Stop ends the watch; calling it again does nothing and returns the first call's result.
func (kw *KeyWatcher) Stop() error {
	kw.once.Do(func() {
		close(kw.stop)
		if err := kw.w.Stop(); err != nil {
			kw.err = fmt.Errorf("stopping a KV watch: %w", err)
		}
	})
	return kw.err
}

func (kw *KeyWatcher) forward() {
	defer close(kw.updates)
	for e := range kw.w.Updates() {
		if e == nil {
			continue // the end of the initial values: there are none with UpdatesOnly
		}
		select {
		case kw.updates <- entry(e):
		case <-kw.stop:
			return
		}
	}
}

func entry(e jetstream.KeyValueEntry) Entry {
	return Entry{
		Key:      e.Key(),
		Value:    e.Value(),
		Revision: e.Revision(),
		Created:  e.Created(),
		Deleted:  e.Operation() != jetstream.KeyValuePut,
	}
}

func encode(m proto.Message) ([]byte, error) {
	data, err := protojson.Marshal(m)
	if err != nil {
		return nil, Permanent(fmt.Errorf("encoding %s: %w", m.ProtoReflect().Descriptor().FullName(), err))
	}
	return data, nil
}

// err says what failed on which key, with the bus's sentinel in place of nats.go's where there is one.
func (kv *KV) err(verb, key string, err error) error {
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		err = ErrKeyNotFound
	case verb == "creating" && (errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)):
		// A create is a compare-and-set against "no such key": lost, the key exists (see below).
		err = ErrKeyExists
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		// Replicated streams report a lost compare-and-set with another code than a single replica does;
		// nats.go maps both to ErrKeyRevisionMismatch, but only the first to ErrKeyExists.
		err = ErrRevisionMismatch
	}
	return fmt.Errorf("%s %s of KV bucket %s: %w", verb, key, kv.bucket, err)
}
