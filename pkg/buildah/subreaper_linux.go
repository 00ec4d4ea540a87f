package buildah

import (
	"sync"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

var subreaperOnce sync.Once

// becomeSubreaper makes this process a child subreaper (prctl PR_SET_CHILD_SUBREAPER), once: a process of a
// build whose parent dies (a killed build's RUN step, say) becomes this process's child rather than init's, so
// that run can reap it instead of leaving a zombie — and, when this process is a container's PID 1, an init
// that never reaps. It only changes who the parent of an orphan is: run reaps only a build's own group, and
// os/exec waits for each command by its pid.
func becomeSubreaper(log *zap.Logger) {
	subreaperOnce.Do(func() {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			log.Warn("cannot become a child subreaper; a killed build may leave zombie processes to init", zap.Error(err))
		}
	})
}
