package bus

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/harborflow/harborflow/pkg/event"
)

// Errors of the stream reads.
var (
	// ErrStreamNotFound is returned by StreamInfo, and by ConsumerInfo, for a stream that does not exist.
	ErrStreamNotFound = errors.New("stream not found")
	// ErrConsumerNotFound is returned by ConsumerInfo for a durable consumer that does not exist.
	ErrConsumerNotFound = errors.New("consumer not found")
	// ErrNoStream is returned for a subject (filter) that lies in none of the streams of event.Streams, or
	// spans several.
	ErrNoStream = errors.New("subject is not within one stream")
)

// ReadConfig says which stored messages Read returns.
type ReadConfig struct {
	// Subject is a subject filter (wildcards * and >) within one stream: "registry.>", "dlq.inspector".
	Subject string
	// Since, when not zero, skips the messages stored before it.
	Since time.Time
	// Follow keeps returning new messages as they are stored, until ctx ends.
	Follow bool
}

// Read returns the messages stored on cfg.Subject, in stream order, without acknowledging or changing
// anything: an ordered consumer of its own that the server forgets when the read ends. Without Follow the
// sequence ends after the last message stored when Read started; with Follow it ends when ctx ends, without an
// error. A failure ends the sequence with the error; ErrNoStream when the subject lies in no single stream.
// Each message has its Stream, Sequence and Time set.
func (b *Bus) Read(ctx context.Context, cfg ReadConfig) iter.Seq2[*Message, error] {
	return func(yield func(*Message, error) bool) {
		stream, err := streamOf(cfg.Subject)
		if err != nil {
			yield(nil, fmt.Errorf("reading %s: %w", cfg.Subject, err))
			return
		}
		occ := jetstream.OrderedConsumerConfig{FilterSubjects: []string{cfg.Subject}, DeliverPolicy: jetstream.DeliverAllPolicy}
		if !cfg.Since.IsZero() {
			start := cfg.Since
			occ.DeliverPolicy, occ.OptStartTime = jetstream.DeliverByStartTimePolicy, &start
		}
		fail := func(err error) { yield(nil, fmt.Errorf("reading %s from stream %s: %w", cfg.Subject, stream, err)) }
		cons, err := b.js.OrderedConsumer(ctx, stream, occ)
		if err != nil {
			fail(err)
			return
		}
		if !cfg.Follow {
			info, err := cons.Info(ctx)
			if err != nil {
				fail(err)
				return
			}
			if info.NumPending == 0 {
				return
			}
		}
		for {
			if ctx.Err() != nil {
				if !cfg.Follow {
					fail(ctx.Err())
				}
				return
			}
			batch, err := cons.Fetch(256, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				if cfg.Follow && ctx.Err() != nil {
					return
				}
				fail(err)
				return
			}
			for jm := range batch.Messages() {
				md, err := jm.Metadata()
				if err != nil {
					fail(err)
					return
				}
				if !yield(consumed(jm, md), nil) {
					return
				}
				if !cfg.Follow && md.NumPending == 0 {
					return
				}
			}
			if err := batch.Error(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				fail(err)
				return
			}
		}
	}
}

// StreamInfo is the state of a stream.
type StreamInfo struct {
	Name     string
	Subjects []string
	Replicas int
	// Messages and Bytes are what the stream holds; FirstSeq and LastSeq its first and last sequence.
	Messages, Bytes   uint64
	FirstSeq, LastSeq uint64
	// LastTime is when the last message was stored; zero when there is none.
	LastTime time.Time
}

// ConsumerInfo is the state of a durable consumer on one stream.
type ConsumerInfo struct {
	Stream  string
	Durable string
	// Pending is how many messages of the consumer's subjects are stored and not yet delivered.
	Pending uint64
	// AckPending is how many are delivered and not yet settled (acked, nak'ed or terminated).
	AckPending int
	// Redelivered is how many of those were delivered more than once.
	Redelivered int
	// Delivered is the stream sequence of the last delivery; AckFloor the sequence up to which every
	// message is settled.
	Delivered uint64
	AckFloor  uint64
	// Waiting is how many pull requests of running consumers wait for a message on the server.
	Waiting int
}

// StreamInfo returns the state of the stream called name: ErrStreamNotFound if there is none.
func (b *Bus) StreamInfo(ctx context.Context, name string) (*StreamInfo, error) {
	s, err := b.stream(ctx, name)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", name, err)
	}
	return &StreamInfo{
		Name: name, Subjects: slices.Clone(info.Config.Subjects), Replicas: info.Config.Replicas,
		Messages: info.State.Msgs, Bytes: info.State.Bytes, FirstSeq: info.State.FirstSeq, LastSeq: info.State.LastSeq,
		LastTime: info.State.LastTime,
	}, nil
}

// Consumers returns the durable consumers of the stream called name, by name; ephemeral readers (Read, `nats
// sub`) are left out. ErrStreamNotFound if there is no such stream.
func (b *Bus) Consumers(ctx context.Context, name string) ([]ConsumerInfo, error) {
	s, err := b.stream(ctx, name)
	if err != nil {
		return nil, err
	}
	var out []ConsumerInfo
	lister := s.ListConsumers(ctx)
	for ci := range lister.Info() {
		if ci.Config.Durable == "" {
			continue
		}
		out = append(out, consumerInfo(ci))
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("listing the consumers of stream %s: %w", name, err)
	}
	slices.SortFunc(out, func(a, b ConsumerInfo) int { return strings.Compare(a.Durable, b.Durable) })
	return out, nil
}

// ConsumerInfo returns the state of the durable consumer called durable on stream: ErrStreamNotFound or
// ErrConsumerNotFound when either does not exist.
func (b *Bus) ConsumerInfo(ctx context.Context, stream, durable string) (*ConsumerInfo, error) {
	c, err := b.js.Consumer(ctx, stream, durable)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("reading consumer %s of stream %s: %w", durable, stream, ErrStreamNotFound)
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return nil, fmt.Errorf("reading consumer %s of stream %s: %w", durable, stream, ErrConsumerNotFound)
	case err != nil:
		return nil, fmt.Errorf("reading consumer %s of stream %s: %w", durable, stream, err)
	}
	return infoOf(ctx, c)
}

func infoOf(ctx context.Context, c jetstream.Consumer) (*ConsumerInfo, error) {
	ci, err := c.Info(ctx)
	if err != nil {
		cached := c.CachedInfo()
		return nil, fmt.Errorf("reading consumer %s of stream %s: %w", cached.Name, cached.Stream, err)
	}
	info := consumerInfo(ci)
	return &info, nil
}

func consumerInfo(ci *jetstream.ConsumerInfo) ConsumerInfo {
	return ConsumerInfo{
		Stream: ci.Stream, Durable: ci.Name, Pending: ci.NumPending, AckPending: ci.NumAckPending,
		Redelivered: ci.NumRedelivered, Delivered: ci.Delivered.Stream, AckFloor: ci.AckFloor.Stream, Waiting: ci.NumWaiting,
	}
}

func (b *Bus) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	s, err := b.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("reading stream %s: %w", name, ErrStreamNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading stream %s: %w", name, err)
	}
	return s, nil
}

// streamOf returns the stream of event.Streams whose subjects hold every subject filter matches.
func streamOf(filter string) (string, error) {
	if filter == "" {
		return "", fmt.Errorf("empty subject: %w", ErrNoStream)
	}
	for _, s := range event.Streams(event.StreamOptions{}) {
		for _, subject := range s.Subjects {
			if subsetOf(filter, subject) {
				return s.Name, nil
			}
		}
	}
	return "", fmt.Errorf("%q: %w", filter, ErrNoStream)
}

// subsetOf reports whether every subject that filter matches is matched by subject (wildcards * and > in
// both).
func subsetOf(filter, subject string) bool {
	f, s := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, ft := range f {
		if i >= len(s) {
			return false
		}
		switch st := s[i]; {
		case st == ">":
			return true
		case ft == ">":
			return false
		case st == "*":
		case ft == "*" || ft != st:
			return false
		}
	}
	return len(f) == len(s)
}
