//go:build !linux

package rebuilder_test

// diskWritten returns false: block output is counted in bytes only on Linux.
func diskWritten() (int64, bool) { return 0, false }
