package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/harborflow/harborflow/pkg/event"
)

// ErrMsgNotFound is returned by GetMsg and DeleteMsg for a sequence the stream does not hold: never stored,
// deleted, or aged out.
var ErrMsgNotFound = errors.New("message not found")

// StreamOf returns the stream of event.Streams that holds every subject subject matches (wildcards * and >
// allowed): ErrNoStream when none does, or when it spans several.
func StreamOf(subject string) (string, error) { return streamOf(subject) }

// GetMsg returns the message stored at sequence seq of stream, with its Stream, Sequence and Time set, as Read
// returns it: ErrStreamNotFound or ErrMsgNotFound when either does not exist. It changes nothing.
func (b *Bus) GetMsg(ctx context.Context, stream string, seq uint64) (*Message, error) {
	s, err := b.stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	raw, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("reading message %d of stream %s: %w", seq, stream, ErrMsgNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading message %d of stream %s: %w", seq, stream, err)
	}
	h := make(nats.Header, len(raw.Header))
	for k, v := range raw.Header {
		h[k] = slices.Clone(v)
	}
	return &Message{
		Subject:  raw.Subject,
		ID:       h.Get(event.HeaderMsgID),
		Header:   h,
		Data:     slices.Clone(raw.Data),
		Stream:   stream,
		Sequence: raw.Sequence,
		Time:     raw.Time,
	}, nil
}

// DeleteMsg removes the message at sequence seq from stream, for good: a consumer that has not reached it yet
// never gets it. The storage is marked erased, not overwritten. ErrStreamNotFound when there is no such stream,
// ErrMsgNotFound when the stream does not hold seq (never stored, or already deleted: two callers deleting the
// same message see one success and one ErrMsgNotFound).
func (b *Bus) DeleteMsg(ctx context.Context, stream string, seq uint64) error {
	s, err := b.stream(ctx, stream)
	if err != nil {
		return err
	}
	if err := s.DeleteMsg(ctx, seq); err != nil {
		// The server answers a missing sequence with a description only ("no message found"), which
		// jetstream folds into ErrMsgDeleteUnsuccessful: ask whether the message is there to tell the two apart.
		if errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
			if _, gerr := s.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
				return fmt.Errorf("deleting message %d of stream %s: %w", seq, stream, ErrMsgNotFound)
			}
		}
		return fmt.Errorf("deleting message %d of stream %s: %w", seq, stream, err)
	}
	return nil
}
