package buildah

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	// stopGrace is how long buildah has, after SIGTERM, to stop by itself when the build's context ends; then
	// it is killed.
	stopGrace = time.Second
	// groupExitWait bounds how long run waits for the processes of a killed build to go away.
	groupExitWait = 10 * time.Second
)

// run runs buildah with the build's global arguments and args in dir, appending its output to the build log.
// A failure is a *BuildError without its tail.
//
// buildah leads a process group of its own, which its children join: buildah's chroot runtime, the RUN step
// and whatever that forks. When ctx ends, the group gets SIGTERM, and buildah stopGrace to stop; then buildah
// is killed, and once it has gone every process left in its group is killed too (nothing in it is of use
// without buildah). run returns only when no process of the group is left, not even a zombie: the process is a
// child subreaper (see becomeSubreaper), so the group's orphans become its children, and run reaps them.
func (b *Builder) run(ctx context.Context, w *work, dir string, args []string) error {
	becomeSubreaper(b.log)
	args = append(w.globalArgs(), args...)
	logf, err := os.OpenFile(w.logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening the build log %s: %w", w.logFile, err)
	}
	defer logf.Close()
	// Arguments hold paths and build arguments only; credentials are in the auth file.
	if _, err := fmt.Fprintf(logf, "+ %s %s\n", b.path, strings.Join(args, " ")); err != nil {
		return fmt.Errorf("writing the build log %s: %w", w.logFile, err)
	}
	cmd := exec.CommandContext(ctx, b.path, args...)
	cmd.Dir = dir
	cmd.Env = w.environ
	cmd.Stdout, cmd.Stderr = logf, logf // files, not pipes: Wait never waits for a child holding a pipe open
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace // then os/exec kills buildah itself
	runErr := cmd.Run()
	if cmd.Process != nil {
		// Make sure nothing of the group outlives buildah, so that nothing writes to the work dir while it is
		// removed and no zombie is left.
		if err := stopGroup(cmd.Process.Pid, groupExitWait); err != nil {
			return err
		}
	}
	if runErr == nil {
		return nil
	}
	be := &BuildError{Command: command(args[len(w.globalArgs()):]), ExitCode: -1, Err: runErr}
	var exitErr *exec.ExitError
	if errors.As(runErr, &exitErr) {
		be.ExitCode = exitErr.ExitCode()
	}
	return be
}

// command names the buildah subcommand of args: "bud", "push" or "manifest push".
func command(args []string) string {
	if len(args) > 1 && args[0] == "manifest" {
		return "manifest " + args[1]
	}
	if len(args) > 0 {
		return args[0]
	}
	return ""
}

// signalGroup sends sig to every process of group pgid; a group already gone is no error.
func signalGroup(pgid int, sig syscall.Signal) error {
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sending %s to process group %d: %w", sig, pgid, err)
	}
	return nil
}

// stopGroup kills what is left of process group pgid (its leader, buildah, has been waited for) and returns
// once none of its processes is alive and none of the dead is a zombie child of this process. Zombies whose
// parent is another process are that parent's to reap (without a subreaper, init's).
func stopGroup(pgid int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		reaped := reapGroup(pgid)
		left := groupMembers(pgid)
		if left == 0 && reaped {
			return nil
		}
		if err := signalGroup(pgid, syscall.SIGKILL); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for buildah's processes (group %d) to exit: %d still running after %s", pgid, left, limit)
		}
		time.Sleep(delay)
	}
}

// reapGroup reaps the children of this process in group pgid that have exited, and reports whether none is
// left, alive or not.
func reapGroup(pgid int) bool {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-pgid, &ws, syscall.WNOHANG, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
		case err != nil: // ECHILD: no child in the group
			return true
		case pid == 0: // children in the group, none exited yet
			return false
		}
	}
}

// groupMembers counts the live processes of process group pgid.
func groupMembers(pgid int) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		state, group, ok := procStat(e.Name())
		if ok && group == pgid && state != "Z" && state != "X" {
			n++
		}
	}
	return n
}

// procStat reads the state and process group of process pid from /proc/<pid>/stat.
func procStat(pid string) (state string, pgid int, ok bool) {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", 0, false
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 3 {
		return "", 0, false
	}
	pgid, err = strconv.Atoi(fields[2])
	if err != nil {
		return "", 0, false
	}
	return fields[0], pgid, true
}
