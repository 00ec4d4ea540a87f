package fault_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/buildah"
	"github.com/harborflow/harborflow/pkg/bus"
	"github.com/harborflow/harborflow/pkg/fault"
	"github.com/harborflow/harborflow/pkg/harbor"
	"github.com/harborflow/harborflow/pkg/registry"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("inspecting h.example/a@sha256:1: %w", err) }
	const (
		backoff   = "back-off"
		retry     = "retry after"
		permanent = "permanent"
	)
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"unavailable", wrap(registry.ErrUnavailable), backoff},
		{"rate limited, no delay", wrap(registry.ErrRateLimited), backoff},
		{"rate limited with Retry-After", wrap(&registry.RateLimitError{Host: "h.example", RetryAfter: time.Minute}), retry},
		{"incomplete write", wrap(registry.ErrIncompleteWrite), backoff},
		{"stopping", wrap(context.Canceled), backoff},
		{"deadline", wrap(context.DeadlineExceeded), backoff},
		{"build stopped", &buildah.BuildError{Command: "bud", ExitCode: -1, Err: context.Canceled}, backoff},
		{"not found", wrap(registry.ErrNotFound), permanent},
		{"harbor unavailable", wrap(harbor.ErrUnavailable), backoff},
		{"harbor rate limited", wrap(harbor.ErrRateLimited), backoff},
		{"harbor not found", wrap(harbor.ErrNotFound), permanent},
		{"harbor forbidden", wrap(harbor.ErrForbidden), permanent},
		{"invalid reference", wrap(registry.ErrInvalidReference), permanent},
		{"unauthorized", wrap(registry.ErrUnauthorized), permanent},
		{"TLS", wrap(registry.ErrTLS), permanent},
		{"base mismatch", wrap(registry.ErrBaseMismatch), permanent},
		{"failed build", &buildah.BuildError{Command: "bud", ExitCode: 1, Err: errors.New("exit status 1")}, permanent},
		{"unknown", errors.New("decoding image config: unexpected end of JSON input"), permanent},
		{"marked permanent", bus.Permanent(wrap(registry.ErrUnavailable)), permanent},
		{"marked wait", bus.Wait(errors.New("waiting for the index"), time.Second), retry},
	} {
		got := fault.Classify(tc.err)
		var action string
		switch {
		case bus.IsPermanent(got):
			action = permanent
		case bus.IsRetry(got):
			action = retry
		default:
			action = backoff
		}
		if action != tc.want {
			t.Errorf("%s: Classify(%v) is %s, want %s", tc.name, tc.err, action, tc.want)
		}
		if got.Error() != tc.err.Error() {
			t.Errorf("%s: the message changed: %q", tc.name, got.Error())
		}
		if !errors.Is(got, tc.err) {
			t.Errorf("%s: the cause is lost", tc.name)
		}
	}
	if fault.Classify(nil) != nil {
		t.Error("Classify(nil) is not nil")
	}
}
