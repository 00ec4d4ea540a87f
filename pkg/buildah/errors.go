package buildah

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrPullBase is matched by a *BuildError of a build that could not pull an image it builds FROM (or copies
// from): the registry was unreachable, refused the credentials, or does not have the image.
var ErrPullBase = errors.New("pulling the base image failed")

// BuildError is a failed or stopped buildah run.
type BuildError struct {
	// Command is the buildah subcommand that failed: "bud", "push" or "manifest push".
	Command string
	// Platform is the platform being built, when the build was for several.
	Platform string
	// ExitCode is buildah's exit status, -1 when it was killed.
	ExitCode int
	// Tail holds the last lines of buildah's output (WithLogTail), for a person to read.
	Tail []string
	// Base is the image that could not be pulled, when the build failed pulling it.
	Base string
	// Err is the cause: an *exec.ExitError, or the context's error when the build was stopped.
	Err error

	timeout  time.Duration
	timedOut bool
}

// Error says what failed: "buildah bud failed (exit 1): <buildah's error>" ("... failed for linux/arm64 ..."
// in a build for several platforms), "pulling base <image>: <buildah's error>" or "build timed out after
// 5m0s".
func (e *BuildError) Error() string {
	switch {
	case e.timedOut:
		return fmt.Sprintf("build timed out after %s", e.timeout)
	case errors.Is(e.Err, context.Canceled) || errors.Is(e.Err, context.DeadlineExceeded):
		return fmt.Sprintf("buildah %s stopped: %v", e.Command, e.Err)
	case e.Base != "":
		return fmt.Sprintf("pulling base %s: %s", e.Base, pullReason(e.LastLine()))
	}
	if e.Platform != "" {
		return fmt.Sprintf("buildah %s failed for %s (exit %d): %s", e.Command, e.Platform, e.ExitCode, e.LastLine())
	}
	return fmt.Sprintf("buildah %s failed (exit %d): %s", e.Command, e.ExitCode, e.LastLine())
}

// Unwrap returns the cause, and ErrPullBase for a failed pull.
func (e *BuildError) Unwrap() []error {
	if e.Base != "" {
		return []error{ErrPullBase, e.Err}
	}
	return []error{e.Err}
}

// LastLine is buildah's own error message (its last "Error: " line, without the prefix), or else the last
// line of output.
func (e *BuildError) LastLine() string {
	for i := len(e.Tail) - 1; i >= 0; i-- {
		if msg, ok := strings.CutPrefix(e.Tail[i], "Error: "); ok {
			return msg
		}
	}
	for i := len(e.Tail) - 1; i >= 0; i-- {
		if s := strings.TrimSpace(e.Tail[i]); s != "" {
			return s
		}
	}
	return "no output"
}

// classify sets Base when the tail says buildah could not pull an image.
func (e *BuildError) classify() {
	if e.Command != "bud" {
		return
	}
	msg := e.LastLine()
	if !strings.Contains(msg, "creating build container") && !strings.Contains(msg, "initializing source") {
		return
	}
	for i := len(e.Tail) - 1; i >= 0; i-- {
		line := e.Tail[i]
		if img, ok := strings.CutPrefix(line, "Trying to pull "); ok {
			e.Base = strings.TrimSuffix(img, "...")
			return
		}
		if _, step, ok := strings.Cut(line, ": FROM "); ok && strings.HasPrefix(line, "STEP ") {
			if f := strings.Fields(step); len(f) > 0 {
				e.Base = f[0]
				return
			}
		}
	}
	if i := strings.Index(msg, "docker://"); i >= 0 {
		img := msg[i+len("docker://"):]
		if j := strings.Index(img, ": "); j > 0 {
			e.Base = img[:j]
			return
		}
	}
}

// pullReason shortens buildah's pull error to what went wrong.
func pullReason(msg string) string {
	msg = strings.TrimPrefix(msg, "creating build container: ")
	if rest, ok := strings.CutPrefix(msg, "initializing source "); ok {
		if _, reason, ok := strings.Cut(rest, ": "); ok {
			return reason
		}
	}
	return msg
}
