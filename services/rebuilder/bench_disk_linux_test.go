package rebuilder_test

import "syscall"

// diskWritten is how many bytes this process and its children (waited for) have written towards disk so far,
// and true. It is the kernel's block output count (getrusage ru_oublock, in 512-byte units, the write_bytes of
// /proc/<pid>/io): bytes of files on block devices made dirty in the page cache, counted when written, not when
// flushed, so a delta around a build is exact and synchronous; a temporary file deleted before it reaches the
// disk still counts (/proc's cancelled_write_bytes, not subtracted here), as does the embedded JetStream's
// store. Writes to sockets and pipes (registry traffic) and to tmpfs do not count. A child counts once it has
// been waited for: buildah has exited when a build returns.
func diskWritten() (int64, bool) {
	var self, children syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &self) != nil || syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children) != nil {
		return 0, false
	}
	return int64(self.Oublock+children.Oublock) * 512, true
}
