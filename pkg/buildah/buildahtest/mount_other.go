//go:build !linux

package buildahtest

import (
	"errors"
	"fmt"
	"runtime"
)

// overlayMountable fails: overlay mounts are Linux's.
func overlayMountable(string) error {
	return fmt.Errorf("overlay mounts on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

// unmount fails: nothing is mounted outside Linux.
func unmount(path string) error {
	return fmt.Errorf("umount %s on %s: %w", path, runtime.GOOS, errors.ErrUnsupported)
}

// isKernelOverlay fails: overlay mounts are Linux's.
func isKernelOverlay(path string) (bool, error) {
	return false, fmt.Errorf("statfs %s on %s: %w", path, runtime.GOOS, errors.ErrUnsupported)
}
