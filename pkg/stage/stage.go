// Package stage is the one shape every harborflow stage has: the receiver, the watcher, the inspector, the
// rebuilder, and the promoter and retention to come.
//
// A service package builds its stage with a constructor that takes its own config section and its dependencies
// (logger, bus, registry client, metrics registry) and returns a Stage. A stage that consumes messages does not
// run a consumer itself: it declares its durable consumer and handler, and Consuming turns them into a Stage. A
// stage that produces messages on its own schedule (the watcher) is a Loop. services/harborflow wires stages from
// one list, so `harborflow run --stages inspector,rebuilder` runs any subset in one process.
//
// Shutdown has one meaning for every stage: stop intake, let the work in flight finish until ctx ends, then
// cancel what is left (a consumed message is handed back for another replica or the next start), and return
// once nothing of the stage runs. The process stops its stages this way, then drains NATS; no stage owns the
// connection.
package stage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/logging"
)

// Stage is one stage of harborflow, running in this process.
type Stage interface {
	// Name is the stage's name: receiver, watcher, inspector, rebuilder, promoter or retention.
	Name() string
	// Start starts the stage's intake and returns; the stage runs in the background until Shutdown. ctx
	// bounds the start only.
	Start(ctx context.Context) error
	// Shutdown stops intake at once, lets the work in flight finish until ctx ends, then cancels it, and
	// returns when nothing of the stage runs any more. A stop that had to cancel work is not an error: the
	// work is done again elsewhere. The error says what could not be stopped or settled.
	Shutdown(ctx context.Context) error
}

// Readier is a Stage that can tell whether it can do its work, for /readyz.
type Readier interface {
	// Ready returns nil when the stage can work: its consumers exist on the server, say.
	Ready(ctx context.Context) error
}

// Failer is a Stage whose background work can end on its own, before Shutdown.
type Failer interface {
	// Failed delivers the error that ended the stage's work before Shutdown, at most once, and is closed when
	// the work has ended.
	Failed() <-chan error
}

// Consumer is what a consuming stage declares: its durable consumer and its handler.
type Consumer interface {
	// ConsumerConfig is the stage's durable consumer: subjects, durable name, deliveries, concurrency.
	ConsumerConfig() bus.ConsumerConfig
	// Handle handles one message (bus.HandlerFunc).
	Handle(ctx context.Context, m *bus.Message) ([]*bus.Message, error)
}

// Consuming is the Stage that runs c's handler on c's durable consumer of b.
func Consuming(b *bus.Bus, c Consumer) Stage {
	return &consuming{bus: b, cfg: c.ConsumerConfig(), handle: c.Handle}
}

type consuming struct {
	bus    *bus.Bus
	cfg    bus.ConsumerConfig
	handle bus.HandlerFunc
	mu     sync.Mutex
	c      *bus.Consumer
}

func (s *consuming) Name() string { return s.cfg.Stage }

func (s *consuming) Start(ctx context.Context) error {
	c, err := s.bus.Consume(ctx, s.cfg, s.handle)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.c = c
	s.mu.Unlock()
	return nil
}

func (s *consuming) consumer() *bus.Consumer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.c
}

func (s *consuming) Shutdown(ctx context.Context) error {
	c := s.consumer()
	if c == nil {
		return nil
	}
	return c.Shutdown(ctx)
}

func (s *consuming) Ready(ctx context.Context) error {
	c := s.consumer()
	if c == nil {
		return fmt.Errorf("stage %s: not started", s.cfg.Stage)
	}
	return c.Ready(ctx)
}

// Loop is the Stage that runs run in the background until Shutdown cancels its context. run returns when its
// context ends; an error it returns before that is the stage's failure, delivered by Failed.
func Loop(name string, run func(ctx context.Context) error) Stage {
	return &loop{name: name, run: run, failed: make(chan error, 1)}
}

// Tasks is the Loop that publishes on b, every interval, the messages due returns: how a stage asks its own
// handler for work no event causes (task.<stage>, with content-derived ids, so that replicas ask once). A
// failed publish ends the round: the next one asks again.
func Tasks(name string, b *bus.Bus, every time.Duration, log *zap.Logger, due func(ctx context.Context) ([]*bus.Message, error)) Stage {
	return Loop(name, func(ctx context.Context) error {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-t.C:
			}
			tasks, err := due(ctx)
			if err != nil && ctx.Err() == nil {
				log.Warn("looking for work due", zap.String(logging.FieldStage, name), zap.Error(err))
			}
			for _, m := range tasks {
				if _, err := b.Publish(ctx, m); err != nil {
					if ctx.Err() == nil {
						log.Warn("asking for work due", zap.String(logging.FieldStage, name), zap.String(logging.FieldSubject, m.Subject), zap.Error(err))
					}
					break
				}
			}
		}
	})
}

type loop struct {
	name   string
	run    func(ctx context.Context) error
	cancel context.CancelFunc
	done   chan error
	failed chan error
}

func (l *loop) Name() string { return l.name }

func (l *loop) Start(context.Context) error {
	// The loop's context is its own: it ends at Shutdown, not when the start does.
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel, l.done = cancel, make(chan error, 1)
	go func() {
		err := l.run(ctx)
		if ctx.Err() == nil {
			if err == nil {
				err = errors.New("stopped on its own")
			}
			l.failed <- fmt.Errorf("stage %s: %w", l.name, err)
			err = nil // reported once, by Failed
		}
		close(l.failed)
		l.done <- err
	}()
	return nil
}

func (l *loop) Failed() <-chan error { return l.failed }

// Shutdown cancels the loop at once: a loop's work in flight is a poll, which the next start does again.
func (l *loop) Shutdown(ctx context.Context) error {
	if l.cancel == nil {
		return nil
	}
	l.cancel()
	select {
	case err := <-l.done:
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("stage %s: %w", l.name, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stage %s did not stop: %w", l.name, ctx.Err())
	}
}
