package stage_test

import (
	"context"
	"errors"
	"testing"
	"time"

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
