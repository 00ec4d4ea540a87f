package bus_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/harborflow/harborflow/pkg/bus"
)

func TestPermanent(t *testing.T) {
	inner := errors.New("bad body")
	err := bus.Permanent(inner)
	if err.Error() != "bad body" {
		t.Errorf("Error() = %q, want the inner message", err)
	}
	if !errors.Is(err, inner) || errors.Unwrap(err) != inner {
		t.Error("Permanent hides the inner error")
	}
	if !bus.IsPermanent(err) {
		t.Error("IsPermanent(Permanent(err)) = false")
	}
	if !bus.IsPermanent(fmt.Errorf("decoding: %w", err)) {
		t.Error("IsPermanent does not see through wrapping")
	}
	if bus.IsPermanent(inner) || bus.IsPermanent(nil) {
		t.Error("IsPermanent is true for an unmarked error")
	}
	if bus.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
}

func TestRetry(t *testing.T) {
	inner := errors.New("registry unreachable")
	err := bus.Retry(inner, time.Minute)
	if err.Error() != "registry unreachable" {
		t.Errorf("Error() = %q, want the inner message", err)
	}
	if !errors.Is(err, inner) {
		t.Error("Retry hides the inner error")
	}
	if bus.IsPermanent(err) {
		t.Error("IsPermanent(Retry(err)) = true")
	}
	if !bus.IsPermanent(bus.Permanent(err)) {
		t.Error("a permanent mark over a retry mark is not permanent")
	}
	if bus.Retry(nil, time.Minute) != nil {
		t.Error("Retry(nil) != nil")
	}
}

func TestWaitIsARetryWithItsDelay(t *testing.T) {
	reason := errors.New("waiting for the index")
	err := bus.Wait(reason, 2*time.Second)
	if !errors.Is(err, reason) || err.Error() != reason.Error() || bus.IsPermanent(err) {
		t.Fatalf("Wait(%v) = %v", reason, err)
	}
	if bus.Wait(nil, time.Second) != nil {
		t.Fatal("Wait(nil) is not nil")
	}
}
