package stage_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/bus/bustest"
	"github.com/harborflow/harborflow/pkg/event"
	"github.com/harborflow/harborflow/pkg/stage"
)

// A loop that ends on its own reports why through Failed, once; its Shutdown then has nothing more to say.
func TestLoopThatEndsOnItsOwnFails(t *testing.T) {
	broken := errors.New("registry list refused")
	s := stage.Loop("watcher", func(context.Context) error { return broken })
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.(stage.Failer).Failed():
		if !errors.Is(err, broken) || err.Error() != "stage watcher: registry list refused" {
			t.Errorf("Failed delivered %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Failed delivered nothing")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after the failure: %v", err)
	}
}

// A loop stopped by Shutdown returns at once, and Failed closes without an error.
func TestLoopStoppedByShutdownDoesNotFail(t *testing.T) {
	s := stage.Loop("watcher", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err, failed := <-s.(stage.Failer).Failed(); failed {
		t.Errorf("Failed delivered %v after a Shutdown", err)
	}
}

// TestTasksPublishesWhatIsDueEveryRound: each round's messages are published (the same id, stored once), and
// Shutdown stops the loop without a failure.
func TestTasksPublishesWhatIsDueEveryRound(t *testing.T) {
	js := bustest.Start(t)
	var rounds atomic.Int64
	third := make(chan struct{})
	due := func(context.Context) ([]*bus.Message, error) {
		if rounds.Add(1) == 3 {
			close(third)
		}
		return []*bus.Message{{Subject: "task.test", ID: "the-task", Data: []byte(`{}`)}}, nil
	}
	s := stage.Tasks("test", js.Bus, 5*time.Millisecond, zap.NewNop(), due)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-third:
	case <-time.After(10 * time.Second):
		t.Fatal("fewer than three rounds in 10 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-s.(stage.Failer).Failed(); err != nil {
		t.Errorf("failed: %v", err)
	}
	if got := js.Messages(event.StreamTask, "task.>"); len(got) != 1 {
		t.Errorf("%d tasks stored, want the one id once", len(got))
	}
}
