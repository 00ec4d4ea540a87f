package bus

import (
	"context"
	"fmt"
)

// Ready returns nil when the consumer exists on the server: a consumer deleted by an operator, or lost with
// its stream, makes the process not ready rather than silently idle.
func (c *Consumer) Ready(ctx context.Context) error {
	if _, err := c.bus.js.Consumer(ctx, c.cfg.Stream, c.cfg.Stage); err != nil {
		return fmt.Errorf("%w: consumer %q on stream %s: %w", ErrNotReady, c.cfg.Stage, c.cfg.Stream, err)
	}
	return nil
}

// Shutdown stops fetching messages, lets the running handlers finish until ctx ends, then cancels them (their
// messages are handed back) and waits for them to return.
func (c *Consumer) Shutdown(ctx context.Context) error {
	if err := c.Drain(ctx); err == nil {
		return nil
	}
	<-c.done
	return nil
}
