package bus

import (
	"context"
	"fmt"
)

// Ready returns nil when every durable consumer of c exists on the server: a consumer deleted by an operator,
// or lost with its stream, makes the process not ready rather than silently idle.
func (c *Consumer) Ready(ctx context.Context) error {
	if _, err := c.Info(ctx); err != nil {
		return fmt.Errorf("%w: stage %s: %w", ErrNotReady, c.cfg.Stage, err)
	}
	return nil
}
