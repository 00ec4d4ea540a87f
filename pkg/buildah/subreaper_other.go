//go:build !linux

package buildah

import "go.uber.org/zap"

// becomeSubreaper does nothing outside Linux, which has no child subreapers: the orphans of a killed build are
// init's to reap.
func becomeSubreaper(*zap.Logger) {}
